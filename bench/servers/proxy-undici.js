// Reference row: the minimal Node mTLS proxy with an `undici` Pool to the app.
import https from 'node:https';
import { Pool } from 'undici';
import { announce, HOP_BY_HOP, referenceArgs } from './reference-args.js';

const { listenPort, appPort, tls } = referenceArgs();
const pool = new Pool(`http://127.0.0.1:${appPort}`, { pipelining: 1, keepAliveTimeout: 60_000 });

const server = https.createServer(tls, (req, res) => {
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name)) headers[name] = value;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.request({ path: req.url ?? '/', method: req.method ?? 'GET', headers, body: hasBody ? req : null }).then(
    ({ statusCode, headers: upstreamHeaders, body }) => {
      res.writeHead(statusCode, upstreamHeaders);
      body.pipe(res);
    },
    () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    },
  );
});
server.listen(listenPort, '127.0.0.1', () => announce(server));
