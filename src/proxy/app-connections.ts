// The connections to an HTTP/1.1 app on the raw HTTP/1.1 path. A caller connection keeps the app connection
// its first request opened for as long as it lasts (its next requests need no lookup, and one caller's
// requests never queue behind another's); when the caller leaves, an app connection that may be reused waits
// here for the next caller: newest first (the warmest), at most `maxIdle`, each for as long as the app keeps
// idle connections (its `Keep-Alive: timeout`, else a little under Node's default of 5 s, so that we do not
// send a request on a connection the app is closing).
import type * as net from 'node:net';
import { connectWithSharedReads } from './shared-read-buffer.js';

const UNSTATED_IDLE_MS = 4_000;
/** Stop using a connection this long before the app said it would close it. */
const IDLE_MARGIN_MS = 1_000;

export interface AppConnection {
  readonly socket: net.Socket;
  /** It carried a request before (a failure before any response byte may be the app closing it). */
  readonly reused: boolean;
}

export class AppConnections {
  private readonly idle: net.Socket[] = [];
  private closed = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly maxIdle: number,
  ) {}

  /** An idle connection, else a new one (connecting: writes are buffered until it is up). */
  take(): AppConnection {
    for (let socket = this.idle.pop(); socket !== undefined; socket = this.idle.pop()) {
      unpark(socket);
      if (!socket.destroyed && socket.readable && socket.writable) return { socket, reused: true };
      socket.destroy();
    }
    const socket = connectWithSharedReads({ host: this.host, port: this.port, noDelay: true });
    return { socket, reused: false };
  }

  /**
   * A connection whose last response ended cleanly, with no listener of the caller's left on it. `keepAliveMs`:
   * what is left of the app's idle timeout (its `Keep-Alive: timeout` less the time the connection has already been
   * idle); undefined when the app stated none and the connection has not waited.
   */
  give(socket: net.Socket, keepAliveMs: number | undefined): void {
    if (this.closed || socket.destroyed || this.idle.length >= this.maxIdle) {
      socket.destroy();
      return;
    }
    const ms = keepAliveMs === undefined ? UNSTATED_IDLE_MS : keepAliveMs - IDLE_MARGIN_MS;
    if (ms <= 0) {
      socket.destroy();
      return;
    }
    const drop = () => {
      socket.destroy();
      const at = this.idle.indexOf(socket);
      if (at >= 0) this.idle.splice(at, 1);
    };
    parked.set(socket, drop);
    // Bytes from an idle app (a late or extra response), its close or an error: the connection is done.
    socket.on('data', drop);
    socket.on('end', drop);
    socket.on('error', drop);
    socket.setTimeout(ms, drop);
    this.idle.push(socket);
  }

  close(): void {
    this.closed = true;
    for (const socket of this.idle.splice(0)) socket.destroy();
  }
}

const parked = new WeakMap<net.Socket, () => void>();

function unpark(socket: net.Socket): void {
  const drop = parked.get(socket);
  if (!drop) return;
  parked.delete(socket);
  socket.off('data', drop);
  socket.off('end', drop);
  socket.off('error', drop);
  socket.setTimeout(0);
  socket.removeAllListeners('timeout');
}
