// Reference row: `http-proxy` 1.18.1 behind a Node mTLS server, with a keep-alive agent to the app.
import http from 'node:http';
import https from 'node:https';
import httpProxy from 'http-proxy';
import { announce, referenceArgs } from './reference-args.js';

const { listenPort, appPort, tls } = referenceArgs();
const proxy = httpProxy.createProxyServer({
  target: `http://127.0.0.1:${appPort}`,
  agent: new http.Agent({ keepAlive: true, scheduling: 'lifo' }),
  xfwd: false,
});
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502).end();
  else res.destroy();
});

const server = https.createServer(tls, (req, res) => proxy.web(req, res));
server.listen(listenPort, '127.0.0.1', () => announce(server));
