// What every reference proxy shares: its command line and the mTLS server options (our SVID, the bundle,
// a client certificate required and verified by OpenSSL; Node's defaults otherwise, session tickets on).
// Usage of a reference proxy: node bench/servers/<proxy>.js LISTEN_PORT APP_PORT CERT_DIR
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';

export function referenceArgs() {
  const [listenPort, appPort, certDir] = process.argv.slice(2);
  if (!listenPort || !appPort || !certDir) throw new Error('usage: LISTEN_PORT APP_PORT CERT_DIR');
  return {
    listenPort: Number(listenPort),
    appPort: Number(appPort),
    /** @type {import('node:https').ServerOptions} */
    tls: {
      cert: readFileSync(join(certDir, 'tls.crt')),
      key: readFileSync(join(certDir, 'tls.key')),
      ca: readFileSync(join(certDir, 'ca.crt')),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['http/1.1'],
    },
  };
}

/**
 * Prints the ready line the harness waits for, and exits on SIGTERM.
 * @param {import('node:net').Server} server
 */
export function announce(server) {
  process.stdout.write(`listening ${/** @type {import('node:net').AddressInfo} */ (server.address()).port}\n`);
  process.on('SIGTERM', () => process.exit(0));
}

/** Hop-by-hop request headers (RFC 9110 §7.6.1): never forwarded. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
