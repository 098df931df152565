// How our mTLS listeners (HTTP and TCP) take a new connection: we wrap each accepted TCP socket in TLS
// ourselves, in place of tls.Server's own connection listener, and do what it does after the handshake:
// OpenSSL's verdict on the peer into `authorized`/`authorizationError`, then 'secureConnection'; a
// connection that fails or ends before that is a 'tlsClientError', as with tls.Server.
//
// Why not tls.Server's listener: in Node 24 (not in Node 20) its handshake handler also calls the socket's
// getPeerX509Certificate(), and on a server socket that call takes every certificate the peer sent after
// its leaf out of the TLS session without freeing it (Node's X509Certificate::GetPeerCert). Our verifier
// then never sees a peer's intermediates (an SVID issued by an intermediate CA is refused), and each of
// those certificates stays in native memory for good: ~4.7 KB per connection from a peer that sends its
// chain, which is what the soak's growth was. We read the peer's certificates ourselves, by copying
// calls only (authn/peer-certificates.ts).
import type { Socket } from 'node:net';
import { createSecureContext, type SecureContext, type SecureContextOptions, type Server, TLSSocket } from 'node:tls';
import { peerLeafDer } from '../authn/peer-certificates.js';

/** Binds resumable sessions to this program (tls.Server uses a hash of the command line). */
const SESSION_ID_CONTEXT = 'spiffe-sidecar';

export interface TlsIntakeOptions {
  /** Ask for the client's certificate (OpenSSL checks it; the decision stays with the caller). */
  requestCert: boolean;
  handshakeTimeoutMs: number;
  ALPNProtocols?: string[];
}

/** What tls.Server's own listener uses on a socket and Node does not name publicly (the same since io.js). */
interface TlsSocketInternals {
  ssl: { verifyError(): (Error & { code?: string }) | null | undefined } | null;
  _releaseControl(): boolean;
  secureConnecting: boolean;
}

/** The context of new connections, with what tls.Server adds to the options it is given. */
function serverContext(options: SecureContextOptions): SecureContext {
  return createSecureContext({ honorCipherOrder: true, sessionIdContext: SESSION_ID_CONTEXT, ...options });
}

function connectionReset(): NodeJS.ErrnoException {
  return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
}

export class TlsIntake {
  private context: SecureContext;

  /** Takes over `server`'s connections; call it before adding other 'connection' listeners. */
  constructor(
    private readonly server: Server,
    contextOptions: SecureContextOptions,
    private readonly options: TlsIntakeOptions,
  ) {
    if (typeof (TLSSocket.prototype as unknown as Partial<TlsSocketInternals>)._releaseControl !== 'function') {
      throw new Error(`Node ${process.version}: tls.TLSSocket has no _releaseControl(); this Node is not supported`);
    }
    const listeners = server.listeners('connection');
    // tls.Server has exactly one: its own wrapping of the socket. Anything else is a Node we do not know.
    if (listeners.length !== 1) throw new Error('unexpected tls.Server: expected one connection listener');
    server.removeAllListeners('connection');
    server.on('connection', (raw: Socket) => this.accept(raw));
    this.context = serverContext(contextOptions);
  }

  /** The context of connections accepted from now on; open ones keep theirs (a rotation). */
  setSecureContext(options: SecureContextOptions): void {
    this.context = serverContext(options);
  }

  private accept(raw: Socket): void {
    const socket = new TLSSocket(raw, {
      isServer: true,
      server: this.server,
      secureContext: this.context,
      requestCert: this.options.requestCert,
      // The decision is the caller's (authn/mtls.ts), so that every refused peer is logged with its reason.
      rejectUnauthorized: false,
      ALPNProtocols: this.options.ALPNProtocols,
      // Read by TLSSocket for server sockets, as tls.Server passes it: a '_tlsError' when it runs out.
      handshakeTimeout: this.options.handshakeTimeoutMs,
    } as ConstructorParameters<typeof TLSSocket>[1]);
    const internals = socket as unknown as TlsSocketInternals;
    let settled = false;
    // A connection whose handshake failed, timed out or was cut is reported, then closed: nothing else
    // will ever serve it (tls.Server leaves that to a listener; ours only log).
    const failed = (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      this.server.emit('tlsClientError', err, socket);
      socket.destroy();
    };
    socket.on('_tlsError', failed);
    socket.on('error', failed);
    socket.on('close', (hadError: boolean) => {
      if (!hadError) failed(connectionReset());
    });
    socket.once('secure', () => {
      // A handshake completed after its timeout was already reported and closed.
      if (settled) return;
      if (this.options.requestCert) {
        const code = verifyErrorCode(socket, internals);
        if (code) socket.authorizationError = code as unknown as Error;
        else socket.authorized = true;
      }
      if (socket.destroyed || !internals._releaseControl()) return;
      settled = true;
      internals.secureConnecting = false;
      this.server.emit('secureConnection', socket);
    });
  }
}

/** OpenSSL's verdict on the peer's certificate, as tls.Server names it: a code, or nothing when it verified. */
function verifyErrorCode(socket: TLSSocket, internals: TlsSocketInternals): string | undefined {
  if (!internals.ssl) return 'UNSPECIFIED';
  const error = internals.ssl.verifyError();
  if (error) return error.code ?? error.message;
  // OpenSSL says OK for a TLS 1.3 resumption that never had a certificate (a PSK): not a verified peer.
  // Node 24's tls.Server makes the same check.
  if (socket.isSessionReused() && !peerLeafDer(socket)) return 'UNABLE_TO_GET_ISSUER_CERT';
  return undefined;
}
