// The two-way byte relay of the L4 modes (inbound `--protocol tcp`, outbound `tls://` routes): bytes move
// both ways with back-pressure, each direction half-closes on its own, and an idle connection, an error
// on either socket or the close of the socket we accepted ends both.
import type { Socket } from 'node:net';

export interface ByteRelayOptions {
  /** No byte either way for this long (`--idle-timeout`) destroys both sockets. */
  idleTimeoutMs: number;
  /** Told of every error on either socket, before both are destroyed (a connect failure, for a log line). */
  onError?: (err: Error) => void;
}

/**
 * `accepted` is the socket our listener accepted, `dialed` the one we opened for it; both should allow
 * half-open, or the first end would close a direction that still has bytes to carry.
 */
export function relayBytes(accepted: Socket, dialed: Socket, { idleTimeoutMs, onError }: ByteRelayOptions): void {
  const destroyBoth = () => {
    accepted.destroy();
    dialed.destroy();
  };
  // Not once: a second error (say, both sockets failing) is reported too.
  const fail = (err: Error) => {
    onError?.(err);
    destroyBoth();
  };
  dialed.on('error', fail);
  accepted.on('error', fail);
  // pipe() ends the other side when one side ends (half-close) and pauses a fast writer (back-pressure).
  accepted.pipe(dialed);
  dialed.pipe(accepted);
  // Every relayed byte crosses the accepted socket, so its inactivity is the connection's.
  accepted.setTimeout(idleTimeoutMs, destroyBoth);
  // Once both directions have ended, nothing is left to relay.
  let ended = 0;
  const oneEnded = () => {
    if (++ended === 2) {
      accepted.destroySoon();
      dialed.destroySoon();
    }
  };
  accepted.once('end', oneEnded);
  dialed.once('end', oneEnded);
  accepted.once('close', () => dialed.destroy());
  // The dialed side went away: whatever it sent is flushed to the accepted one, which then closes.
  dialed.once('close', () => {
    if (!accepted.writableEnded) accepted.destroySoon();
  });
}
