// Reference row: the least a Node mTLS proxy can do. A `tls` server whose every connection is relayed, bytes
// both ways with pipe(), to one connection to the app: no HTTP, no logging, no metrics, no identity check past
// OpenSSL's. Its RSS on a Node is that Node's floor for terminating the bench's mTLS load and forwarding it:
// what the sidecar's RSS targets are measured against (bench/README.md).
import * as net from 'node:net';
import * as tls from 'node:tls';
import { announce, referenceArgs } from './reference-args.js';

const { listenPort, appPort, tls: options } = referenceArgs();

const server = tls.createServer(options, (caller) => {
  const app = net.connect({ host: '127.0.0.1', port: appPort, noDelay: true });
  caller.setNoDelay(true);
  caller.on('error', () => app.destroy());
  app.on('error', () => caller.destroy());
  caller.on('close', () => app.destroy());
  app.on('close', () => caller.destroy());
  caller.pipe(app);
  app.pipe(caller);
});
server.listen(listenPort, '127.0.0.1', () => announce(server));
