// Binding and unbinding our listeners (inbound, outbound, admin): a bind failure is an ERR_LISTEN that
// names the flag, and closing means now, open connections included.
import type { Server } from 'node:net';
import { SidecarError } from './errors.js';

/** Binds `server`; `flag` names the setting in the error, e.g. `--listen`. */
export function listen(server: Server, host: string, port: number, flag: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        new SidecarError(
          'ERR_LISTEN',
          `${flag} ${host}:${port}: cannot listen (${err.code ?? err.message}); pick a free port or stop the process that holds it`,
          { cause: err },
        ),
      );
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Stops accepting and closes every connection at once (graceful drains are the proxy's own). */
export function closeNow(server: Server & { closeAllConnections(): void }): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
