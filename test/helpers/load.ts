// Closed-loop load for rotation tests: 16 keep-alive workers, 8 workers that open a new connection per
// request (recording the server certificate serial they see), and one client that resumes TLS sessions.
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { ClientCert } from './client.js';
import { normalizeSerial } from './server-serial.js';

export const KEEP_ALIVE_WORKERS = 16;
export const NEW_CONNECTION_WORKERS = 8;

export interface Load {
  ok: number;
  failures: string[];
  /** Serials of the server certificate seen by new connections, in order. */
  serials: string[];
  stop(): Promise<void>;
}

/** Starts the clients. `cert()` is read for every request, so a test can move clients to a new CA. */
export function startLoad(port: number, cert: () => ClientCert, resumingCert: () => ClientCert): Load {
  const load: Load = { ok: 0, failures: [], serials: [], stop: async () => {} };
  let stopped = false;
  const keepAlive = new Agent({ keepAlive: true, maxSockets: KEEP_ALIVE_WORKERS });
  // A client that caches TLS sessions, with an SVID issued by an intermediate: resumption must not
  // turn into rejections while contexts rotate.
  const resuming = new Agent({ keepAlive: false, maxCachedSessions: 10 });
  const once = (agent: Agent | false, c: ClientCert) =>
    new Promise<void>((resolve) => {
      const req = request(
        { host: '127.0.0.1', port, path: '/load', cert: c.chainPem, key: c.keyPem, rejectUnauthorized: false, agent },
        (res) => {
          if (agent === false)
            load.serials.push(normalizeSerial((res.socket as TLSSocket).getPeerCertificate().serialNumber));
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) load.ok++;
            else load.failures.push(`HTTP ${res.statusCode}`);
            resolve();
          });
        },
      );
      req.on('error', (err) => {
        load.failures.push(err.message);
        resolve();
      });
      req.end();
    });
  const worker = async (agent: () => Agent | false, c: () => ClientCert) => {
    while (!stopped) await once(agent(), c());
  };
  const workers = [
    ...Array.from({ length: KEEP_ALIVE_WORKERS }, () => worker(() => keepAlive, cert)),
    ...Array.from({ length: NEW_CONNECTION_WORKERS }, () => worker(() => false, cert)),
    worker(() => resuming, resumingCert),
  ];
  load.stop = async () => {
    stopped = true;
    await Promise.all(workers);
    keepAlive.destroy();
    resuming.destroy();
  };
  return load;
}

/**
 * Resolves once `count` responses from now on came over new connections served the certificate `serial`:
 * proof that the load kept running after a rotation, whatever the machine's speed. Rejects after `timeoutMs`.
 */
export async function newConnectionsSee(
  load: Load,
  serial: string,
  count = NEW_CONNECTION_WORKERS,
  timeoutMs = 10_000,
) {
  const from = load.serials.length;
  const deadline = Date.now() + timeoutMs;
  const seen = () => load.serials.slice(from).filter((s) => s === serial).length;
  while (seen() < count) {
    if (Date.now() > deadline)
      throw new Error(`${seen()}/${count} new connections saw serial ${serial} in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
