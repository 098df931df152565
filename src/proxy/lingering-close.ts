// Closing a connection whose caller may still be sending (a refused upload, a malformed or timed-out head, a
// refused or declined upgrade with frames behind it), the way nginx's lingering close does: our side ends once
// the answer is out, and what the caller still sends is read and dropped until it closes its side too. Closing
// at once makes our kernel answer those bytes with a reset, and the reset can destroy the answer before the
// caller reads it: a client still writing its body gets EPIPE or ECONNRESET instead of our 403 (undici: one
// upload in five). Bounded: LINGER_IDLE_MS without a byte once our answer is written, LINGER_MAX_MS in all.
// Nothing read here is parsed.
import type { Socket } from 'node:net';

/** A lingering caller that sends nothing for this long after our answer is written is closed (nginx's lingering_timeout: 5 s). */
export const LINGER_IDLE_MS = 2_000;
/**
 * A lingering socket is closed this long after the answer was handed to it, whatever the caller does: still
 * sending, or not reading the answer (nginx's lingering_time: 30 s).
 */
export const LINGER_MAX_MS = 30_000;

/** Where a lingering socket was when it began: what it had read, and when (performance.now()). */
export interface LingerStart {
  readonly bytesRead: number;
  readonly at: number;
}

/** The sockets lingering now: a drain or a revocation closes them with the idle ones (isLingering). */
const lingering = new WeakMap<Socket, LingerStart>();

/** Whether the socket only waits for the caller's last bytes: closing it now loses nothing of ours. */
export function isLingering(socket: Socket): boolean {
  return lingering.has(socket);
}

/** When the socket began to linger: an exchange ended then, whatever the caller sent after (access-log.ts). */
export function lingeringSince(socket: Socket): LingerStart | undefined {
  return lingering.get(socket);
}

/**
 * Ends our side after `text` (if any) and lingers: the socket is destroyed once the caller ends its side, or at
 * the bounds. Whoever read the socket before must drop what comes from now on; it is kept flowing here, even
 * one paused before. Also for a socket whose side has ended already (a relayed answer).
 */
export function endLingering(socket: Socket, text?: string): void {
  if (socket.destroyed) return;
  if (text !== undefined) socket.end(text);
  else if (!socket.writableEnded) socket.end();
  lingering.set(socket, { bytesRead: socket.bytesRead, at: performance.now() });
  const cap = setTimeout(() => socket.destroy(), LINGER_MAX_MS).unref();
  /** Armed once our answer is written; what the caller sends is dropped here, and re-arms it. */
  let idle: NodeJS.Timeout | undefined;
  socket.on('data', () => idle?.refresh());
  // The caller's FIN: nothing more will come, and what we wrote is flushed first.
  socket.once('end', () => socket.destroySoon());
  const written = () => {
    if (!socket.destroyed) idle = setTimeout(() => socket.destroy(), LINGER_IDLE_MS).unref();
  };
  if (socket.writableFinished) written();
  else socket.once('finish', written);
  socket.once('close', () => {
    clearTimeout(cap);
    clearTimeout(idle);
  });
  socket.resume();
}
