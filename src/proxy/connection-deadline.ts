// When a connection must end: at its client certificate's notAfter (the chain's earliest), or at the latest
// exp of the tokens its requests were admitted by, whichever comes first. Identity is verified once per
// connection, so the connection itself must not outlive what proved it. This file only keeps the time and
// calls `onExpire` once it has passed; how a connection ends (GOAWAY, a close after the response under way, a
// cut relay) is its listener's. Never throws.
import type { Socket } from 'node:net';

export type DeadlineCause = 'certificate' | 'token';

interface Deadline {
  certificate?: number;
  token?: number;
  /** The time armed (ms since the epoch): the earlier of the two. */
  at: number;
  timer: NodeJS.Timeout;
}

/** setTimeout holds at most 2^31-1 ms (24.8 days): a later deadline is looked at again then. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class ConnectionDeadlines {
  private readonly deadlines = new WeakMap<Socket, Deadline>();

  constructor(private readonly onExpire: (socket: Socket, cause: DeadlineCause) => void) {}

  /** The connection's verified client certificate expires at `notAfter`. */
  certificate(socket: Socket, notAfter: number): void {
    this.set(socket, notAfter, this.deadlines.get(socket)?.token);
  }

  /** A request on it was admitted by a token that expires at `exp` (ms): the connection may last until the latest. */
  token(socket: Socket, exp: number): void {
    const current = this.deadlines.get(socket);
    if (current?.token !== undefined && current.token >= exp) return;
    this.set(socket, current?.certificate, exp);
  }

  private set(socket: Socket, certificate: number | undefined, token: number | undefined): void {
    const current = this.deadlines.get(socket);
    const at = Math.min(certificate ?? Number.POSITIVE_INFINITY, token ?? Number.POSITIVE_INFINITY);
    if (current && current.at === at) {
      current.certificate = certificate;
      current.token = token;
      return;
    }
    if (current) clearTimeout(current.timer);
    else socket.once('close', () => clearTimeout(this.deadlines.get(socket)?.timer));
    const cause: DeadlineCause = at === certificate ? 'certificate' : 'token';
    const deadline: Deadline = { certificate, token, at, timer: this.arm(socket, at, cause) };
    this.deadlines.set(socket, deadline);
  }

  // Not unref()'d, on purpose: Node keeps the (empty) list of an unref'd timer that is cleared before it
  // fires until its time comes, one list per distinct duration, and every connection's duration is its
  // own: ~160 bytes per closed connection, kept for the certificate's lifetime (the soak's last growth).
  // A ref'd timer's list goes with it, and it keeps nothing alive that its open socket does not.
  private arm(socket: Socket, at: number, cause: DeadlineCause): NodeJS.Timeout {
    return setTimeout(
      () => {
        const deadline = this.deadlines.get(socket);
        if (!deadline || deadline.at !== at) return;
        if (Date.now() <= at) {
          deadline.timer = this.arm(socket, at, cause);
          return;
        }
        this.deadlines.delete(socket);
        if (!socket.destroyed) this.onExpire(socket, cause);
      },
      Math.min(Math.max(0, at - Date.now() + 1), MAX_DELAY_MS),
    );
  }
}
