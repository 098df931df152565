// Reference row: the minimal Node mTLS proxy with `node:http` and a keep-alive agent (the issue's
// "minimal Node https + http.request keep-alive agent").
import http from 'node:http';
import https from 'node:https';
import { announce, HOP_BY_HOP, referenceArgs } from './reference-args.js';

const { listenPort, appPort, tls } = referenceArgs();
const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });

const server = https.createServer(tls, (req, res) => {
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name)) headers[name] = value;
  const upstream = http.request(
    { host: '127.0.0.1', port: appPort, method: req.method, path: req.url, headers, agent },
    (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
      upstreamRes.pipe(res);
    },
  );
  upstream.on('error', () => {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  req.pipe(upstream);
});
server.listen(listenPort, '127.0.0.1', () => announce(server));
