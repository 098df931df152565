// A loopback port for a server a test starts in another process (redis-server, spire-server), which must be
// told its port before it binds.
import { createServer } from 'node:net';

/** A port nothing listens on now (the kernel's choice, released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
