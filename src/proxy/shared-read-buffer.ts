// Reads into one shared buffer: Node's `onread` (net.Socket's documented option), for the sockets of the raw
// HTTP/1.1 path. By default every read gets an ArrayBuffer of its own, which the GC must track and free, and
// goes through the readable stream's per-chunk work (push, then a read(0) on the next tick). With `onread` the
// bytes land in one buffer and a callback gets them; we copy them out at once (a read under 4 KiB, most of
// them, into Buffer's shared pool) and hand them to the 'data' listeners as Readable itself would.
// Measured in paired keep-alive windows (README, Performance): the app side 4-5% less CPU per request, the
// caller's TLS side another 5-8%.
//
// One buffer serves every socket: the thread handles one read at a time, and each read is copied before any
// listener runs, so a read that a listener causes (none does today) could not overwrite bytes not yet taken.
//
// Paused, such a socket reads on as one with Node's default reads does: net.Socket.pause() would stop an
// `onread` socket at its handle at once, and a caller that reset its connection while we held it paused
// (admission under way, an app not reading) would hold it, and the app connection, until we resumed. So only
// the stream is paused: reads go on into its queue, and stop when the queue is full (push() says so).
import * as net from 'node:net';
import { Readable } from 'node:stream';

const shared = Buffer.allocUnsafe(64 * 1024);

/** net.connect, the socket reading into the shared buffer (its `onread` option) and pausing as Node's do (below). */
export function connectWithSharedReads(options: net.TcpNetConnectOpts): net.Socket {
  const socket: net.Socket = net.connect({
    ...options,
    onread: { buffer: shared, callback: (bytes) => deliver(socket, bytes) },
  });
  socket.pause = pauseTheStream;
  return socket;
}

/**
 * Hands a read's bytes to the socket's 'data' listeners as Readable would: at once when the stream flows,
 * holds nothing queued and decodes nothing (Readable's own fast path), else queued by push() (paused, no
 * listener yet, older bytes still queued, an encoding set), so that the order holds and nothing is lost.
 * Returns false to stop reading while the queue is full, as push() does.
 */
function deliver(socket: net.Socket, bytes: number): boolean {
  const chunk = Buffer.allocUnsafe(bytes);
  shared.copy(chunk, 0, 0, bytes);
  if (
    socket.readableFlowing === true &&
    socket.readableLength === 0 &&
    socket.readableEncoding === null &&
    socket.listenerCount('data') > 0
  ) {
    socket.emit('data', chunk);
    return true;
  }
  return socket.push(chunk);
}

/** Readable's pause alone, without net.Socket's stop at the handle for `onread` sockets (above). */
function pauseTheStream(this: net.Socket): net.Socket {
  Readable.prototype.pause.call(this);
  return this;
}

/**
 * The fields net.Socket keeps `onread`'s buffer and callback in, found by name on a socket of this Node: the
 * constructor sets them (to null) on every socket. A socket made by a server (the caller's, a TLSSocket) never
 * sees the option: tls.TLSSocket does not pass it on. Undefined on a Node where they are not there or not
 * alone: then nothing is adopted and reads stay Node's default.
 */
const fields = ((): { buffer: symbol; callback: symbol; generator: symbol } | undefined => {
  const probe = new net.Socket();
  const byName = new Map<string, symbol[]>();
  for (const key of Object.getOwnPropertySymbols(probe)) {
    const name = key.description ?? '';
    byName.set(name, [...(byName.get(name) ?? []), key]);
  }
  const one = (name: string) => {
    const found = byName.get(name);
    return found?.length === 1 ? found[0] : undefined;
  };
  const [buffer, callback, generator] = [one('kBuffer'), one('kBufferCb'), one('kBufferGen')];
  probe.destroy();
  return buffer && callback && generator ? { buffer, callback, generator } : undefined;
})();

interface StreamHandle {
  useUserBuffer?: (buffer: Uint8Array) => void;
}

/**
 * Makes an accepted socket (TLS or plain) read into the shared buffer, as `onread` would have: net.Socket's
 * own fields, then its handle's `useUserBuffer`, which is what net.Socket does with the option. Returns
 * whether it did; a socket it cannot adopt (another Node, a socket already using a buffer of its own, or one
 * without its handle) keeps Node's default reads, which behave the same (pausing included, above), only
 * slower.
 */
export function adoptSharedReads(socket: net.Socket): boolean {
  if (fields === undefined || socket.destroyed) return false;
  const own = socket as unknown as Record<symbol, unknown> & { _handle?: StreamHandle | null };
  const handle = own._handle;
  if (typeof handle?.useUserBuffer !== 'function') return false;
  if (own[fields.buffer] !== null || own[fields.callback] !== null || own[fields.generator] !== null) return false;
  own[fields.buffer] = shared;
  own[fields.callback] = (bytes: number) => deliver(socket, bytes);
  handle.useUserBuffer(shared);
  socket.pause = pauseTheStream;
  return true;
}
