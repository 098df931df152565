// Closing a connection whose caller may still be sending (a refused upload, a malformed or timed-out head, a
// refused upgrade with frames behind it), the way nginx's lingering close does: our side ends once the answer is
// out, and what the caller still sends is read and dropped until it closes its side too. Closing at once makes
// our kernel answer those bytes with a reset, and the reset can destroy the answer before the caller reads it:
// a client still writing its body gets EPIPE or ECONNRESET instead of our 403 (undici: one upload in five).
// Bounded: LINGER_IDLE_MS without a byte, LINGER_MAX_MS in all. Nothing read here is parsed.
import type { Socket } from 'node:net';

/** A lingering caller that sends nothing for this long is closed (nginx's lingering_timeout: 5 s). */
export const LINGER_IDLE_MS = 2_000;
/** A lingering caller still sending after this long is closed all the same (nginx's lingering_time: 30 s). */
export const LINGER_MAX_MS = 30_000;

const drop = () => {};

/**
 * Ends our side after `text` and lingers: the socket is destroyed once the
 * caller ends its side, or at the bounds, counted from when our answer is written (until then, a caller that
 * does not read it is timed as any caller that does not read). Whoever read the socket before must drop what
 * comes from now on; the socket is kept flowing here, even one paused before.
 */
export function endLingering(socket: Socket, text?: string): void {
  if (socket.destroyed) return;
  if (text === undefined) socket.end();
  else socket.end(text);
  socket.on('data', drop);
  // The caller's FIN: nothing more will come, and what we wrote is flushed first.
  socket.once('end', () => socket.destroySoon());
  socket.once('finish', () => {
    if (socket.destroyed) return;
    const idle = setTimeout(() => socket.destroy(), LINGER_IDLE_MS).unref();
    const cap = setTimeout(() => socket.destroy(), LINGER_MAX_MS).unref();
    socket.on('data', () => idle.refresh());
    socket.once('close', () => {
      clearTimeout(idle);
      clearTimeout(cap);
    });
  });
  socket.resume();
}
