// The inbound listener: terminates mTLS with our SVID (or serves JWT callers), and for each request runs
// the one pipeline: admission (who is calling, may they: a returned value) → the forwarder for the app's
// protocol (HTTP/1.1, h2c, WebSocket) → the app, with verified identity headers. It owns the connections:
// ALPN dispatch to HTTP/1.1 or HTTP/2, their limits, the HTTP/2 reset budget, rotation, drain and close.
// Each request is an Exchange (access-log.ts): its id, and its access line once it is over.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as http from 'node:http';
import { nodeHttp } from '../node-http.js';
import type * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { noMetrics, type ProxyMetrics } from './proxy-metrics.js';
import type { ApiKeySet } from '../authn/api-keys.js';
import type { Authorizer } from '../authz/policy.js';
import type { IdentitySource } from '../identity/source.js';
import { closeNow, listen } from '../listener.js';
import type { Logger } from '../log.js';
import { type AccessLog, Exchange } from './access-log.js';
import {
  type Admission,
  type InboundAuth,
  logRequestRefused,
  type RequestHead,
  RequestAdmission,
} from './admission.js';
import { type Answer, answer, writeAnswerH1, writeAnswerH2, writeAnswerRaw } from './answers.js';
import { isLingering } from './lingering-close.js';
import { AppConnections } from './app-connections.js';
import { accountConnections } from './connection-accounting.js';
import { ConnectionDeadlines, type DeadlineCause } from './connection-deadline.js';
import { forwardH1 } from './forward-h1.js';
import { forwardH2ToH1 } from './forward-h2.js';
import { forwardToH2c } from './forward-h2c.js';
import { isWebSocketUpgrade, tunnelWebSocket } from './forward-websocket.js';
import { bodyArrived, type ForwardContext, type ForwardTarget, originOf, type Reply } from './forwarding.js';
import { H2_ENHANCE_YOUR_CALM } from './h2-error-codes.js';
import { H2cUpstream } from './h2c-upstream.js';
import { Http1Connection, type Http1Listener } from './h1-connection.js';
import { type HeaderPolicy, upstreamRequestHeaders } from './headers.js';
import { h2RequestToH1 } from './http2-headers.js';
import type { InboundLimits } from './limits.js';
import { logConnectionAccepted } from './peer-gate.js';
import { serverTlsOptions as tlsOptions } from './server-tls.js';
import { TlsIntake } from './tls-intake.js';
import { followRotation, type RotationFollower } from './tls-listener.js';

export interface InboundOptions {
  host: string;
  port: number;
  /** The app: an http: origin. */
  upstream: URL;
  /** Our X.509 identity: required for TLS (mTLS, and JWT over TLS); absent for JWT over plain HTTP. */
  identity?: IdentitySource;
  auth: InboundAuth;
  authorizer: Authorizer;
  /** `--policy-mode dry-run`: denials are logged and counted, and the request goes through. */
  dryRun?: boolean;
  /** `--api-keys-file`: the keys in force. */
  apiKeys?: () => ApiKeySet;
  headers: Omit<HeaderPolicy, 'self' | 'apiKeys'>;
  /** How the app is reached: HTTP/1.1 (default) or cleartext HTTP/2 (`--upstream-protocol h2c`, for gRPC). */
  upstreamProtocol?: 'h1' | 'h2c';
  log: Logger;
  limits: InboundLimits;
  metrics?: ProxyMetrics;
  /**
   * HTTP/1.1 callers: `raw` (the default) reads the socket and frames HTTP/1.1 itself (h1-connection.ts);
   * `node` serves them with node:http (`--http-engine node`). An h2c app always has node:http callers.
   */
  http1Engine?: 'raw' | 'node';
}

const MAX_H2_STREAMS = 100;
/**
 * HTTP/2 "rapid reset" (CVE-2023-44487), judged as Envoy judges it: once a connection has opened this many
 * streams, if more than half of them were reset by the client before we answered, the connection gets
 * GOAWAY(ENHANCE_YOUR_CALM). A count, not a rate: it holds however slowly a busy sidecar reads the flood.
 * A stream already reset is never forwarded, so a burst costs little; a client that cancels now and then
 * (timeouts, hedged calls) is nowhere near half.
 */
export const MIN_STREAMS_JUDGED = 100;

/** An HTTP/2 `:path` as an HTTP/1.1 request target can be: visible ASCII. */
const VISIBLE_ASCII_TARGET = /^[\x21-\x7e]*$/;

export class InboundProxy {
  private readonly server: http.Server;
  private readonly admission: RequestAdmission;
  private readonly forwarding: ForwardContext;
  private readonly headerPolicy: HeaderPolicy;
  /** Our identity's rotation, followed by the TLS server (absent: JWT mode over plain HTTP). */
  private readonly rotation: RotationFollower | undefined;
  private readonly metrics: ProxyMetrics;
  /** What every exchange shares: the log, the metrics, whether a drain cut them. */
  private readonly access: AccessLog;
  /** Upgraded (WebSocket) sockets: the HTTP server no longer tracks them, a drain must. */
  private readonly tunnels = new Set<Socket>();
  /**
   * HTTP/2 callers (ALPN `h2`): the server, made on the first `h2` connection (most sidecars never load node:http2:
   * h2-error-codes.ts); their sessions, and the TLS socket under each (its verified peer).
   */
  private http2: http2.Http2Server | undefined;
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  private readonly sessionSockets = new WeakMap<http2.ServerHttp2Session, TLSSocket>();
  /** Per HTTP/2 connection: streams opened, and streams the client reset before we answered (rapid reset). */
  private readonly streamCounts = new WeakMap<http2.ServerHttp2Session, { opened: number; reset: number }>();
  private acceptingH2: TLSSocket | undefined;
  /** The raw HTTP/1.1 path (absent: node:http serves HTTP/1.1 callers): its connections, and the app's. */
  private readonly http1: { listener: Http1Listener; connections: Map<Socket, Http1Connection> } | undefined;
  /** When each connection must end: its certificate's notAfter, its tokens' exp. */
  private readonly deadlines = new ConnectionDeadlines((socket, cause) => this.expire(socket, cause));
  /** HTTP/1.1 connections with a request under way (Node serves one at a time per connection). */
  private readonly busy = new WeakSet<Socket>();
  /** HTTP/1.1 connections past their certificate's notAfter: closed once the response under way is written. */
  private readonly expired = new WeakSet<Socket>();
  private draining = false;

  private constructor(private readonly options: InboundOptions) {
    const { identity, log, limits, auth } = options;
    this.metrics = options.metrics ?? noMetrics;
    this.access = { log, metrics: this.metrics, cutByDrain: false };
    this.headerPolicy = {
      ...options.headers,
      apiKeys: options.apiKeys !== undefined,
      self: () => (identity as IdentitySource).current().svid.id,
    };
    this.admission = new RequestAdmission({
      auth,
      authorizer: options.authorizer,
      dryRun: options.dryRun,
      apiKeys: options.apiKeys,
      identity: auth.certificates !== 'off' ? identity : undefined,
      headers: this.headerPolicy,
      maxHeaderCount: limits.maxHeaderCount,
      log,
      metrics: this.metrics,
    });
    const httpOptions = {
      // No limit on a whole request (long uploads and streams are legitimate); the header, idle, body and
      // upstream timeouts bound the rest. Node requires headersTimeout <= requestTimeout otherwise.
      requestTimeout: 0,
      headersTimeout: limits.headerTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      // Node keeps the first N fields and drops the rest silently: one more than allowed, so that
      // admission sees the excess and answers 431.
      maxHeadersCount: limits.maxHeaderCount + 1,
      // How often Node checks the header timeout: a tenth of it, so a slowloris is cut close to the limit.
      connectionsCheckingInterval: Math.max(100, Math.floor(limits.headerTimeoutMs / 10)),
    };
    if (auth.certificates !== 'off' && !identity) throw new Error('client certificates need an identity source');
    // JWT mode over plain HTTP has no TLS at all; otherwise we serve our SVID, and ask for the
    // caller's where certificates are accepted.
    // With TLS, connections are wrapped by our intake (tls-intake.ts says why), not by https.Server: the
    // server object is the listener and HTTP/1.1 engine only, so it gets no TLS options of its own.
    // (An empty trust list spares it Node's root store, ~3 ms of start on Node 24.)
    this.server = identity ? https.createServer({ ...httpOptions, ca: [] }) : nodeHttp.createServer(httpOptions);
    const intake = identity
      ? new TlsIntake(this.server as https.Server, tlsOptions(identity.current()), {
          requestCert: auth.certificates !== 'off',
          // One port for both: HTTP/2 when the client offers it (gRPC always does), else HTTP/1.1.
          ALPNProtocols: ['h2', 'http/1.1'],
          handshakeTimeoutMs: limits.handshakeTimeoutMs,
        })
      : undefined;
    const raw = options.http1Engine !== 'node' && options.upstreamProtocol !== 'h2c';
    // Plain HTTP (JWT mode): the connections are ours from the start, not node:http's.
    if (raw && !identity) this.server.removeAllListeners('connection');
    accountConnections(this.server, { maxConnections: limits.maxConnections, metrics: this.metrics, log, identity });
    this.forwarding = {
      upstream: options.upstream,
      agent: new nodeHttp.Agent({ keepAlive: true, scheduling: 'lifo', maxSockets: limits.maxConnections }),
      h2c: options.upstreamProtocol === 'h2c' ? new H2cUpstream(options.upstream) : undefined,
      limits,
      headers: this.headerPolicy,
      tls: identity !== undefined,
      log,
      metrics: this.metrics,
      draining: () => this.draining,
    };
    this.http1 = raw
      ? {
          connections: new Map(),
          listener: {
            forwarding: this.forwarding,
            access: this.access,
            app: new AppConnections(
              options.upstream.hostname,
              Number(options.upstream.port || 80),
              Math.min(limits.maxConnections, 1024),
            ),
            admit: (head, ex, refuse, go) => this.admitThen(head, ex, refuse, go),
            target: (head, admitted, ex, endStream) => this.target(head, admitted, ex, endStream),
            upgrade: (head, ex, early) => this.tunnelUpgrade(head, ex, early),
          },
        }
      : undefined;
    if (raw && !identity) this.server.on('connection', (socket: Socket) => this.serveHttp1(socket));
    if (identity) this.dispatchByAlpn(auth.certificates !== 'off', limits);
    this.server.on('request', (req, res) => this.handle(req, res));
    // `Expect: 100-continue`: answered by us, and only once the caller is admitted. A refused caller gets
    // its 401/403 and never an invitation to send the body.
    this.server.on('checkContinue', (req, res) => this.handle(req, res, true));
    this.server.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket as Socket, head));
    // New identity material applies to new connections only; open ones finish on the old.
    this.rotation =
      identity && intake
        ? followRotation(intake, identity, {
            initialBundles: identity.status().ready ? identity.current().bundles : undefined,
            // On revocation, idle keep-alive connections and tunnels go too (requests on busy ones get 503).
            onRevoked: () => {
              this.closeIdleConnections();
              for (const tunnel of this.tunnels) tunnel.destroy();
              for (const session of this.h2Sessions) session.close();
            },
          })
        : undefined;
  }

  static async start(options: InboundOptions): Promise<InboundProxy> {
    const proxy = new InboundProxy(options);
    await listen(proxy.server, options.host, options.port, '--listen');
    return proxy;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /**
   * Graceful stop: accept nothing new, close idle keep-alive connections, let in-flight requests finish
   * (their responses say `connection: close`) for up to `timeoutMs`, then close whatever is left.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.closeIdleConnections();
    // A response under way when the drain began leaves a keep-alive connection idle later: keep closing.
    const sweep = setInterval(() => this.closeIdleConnections(), 100);
    // HTTP/2: GOAWAY, so that clients open no new streams here while the open ones finish.
    for (const session of this.h2Sessions) session.close();
    const timer = setTimeout(() => {
      this.access.cutByDrain = true;
      this.server.closeAllConnections();
      for (const socket of this.http1?.connections.keys() ?? []) socket.destroy();
      for (const tunnel of this.tunnels) tunnel.destroy();
      for (const session of this.h2Sessions) session.destroy();
    }, timeoutMs);
    await closed;
    clearInterval(sweep);
    clearTimeout(timer);
    for (const tunnel of this.tunnels) tunnel.destroy();
  }

  async close(): Promise<void> {
    this.rotation?.stop();
    for (const session of this.h2Sessions) session.destroy();
    for (const socket of this.http1?.connections.keys() ?? []) socket.destroy();
    await closeNow(this.server);
    this.http1?.listener.app.close();
    this.forwarding.agent.destroy();
    this.forwarding.h2c?.close();
  }

  /** Idle keep-alive connections are closed (a drain, a revocation); busy ones finish their response first. */
  private closeIdleConnections(): void {
    this.server.closeIdleConnections();
    // A lingering socket (lingering-close.ts) only waits for the caller's last bytes after our answer.
    for (const [socket, connection] of this.http1?.connections ?? [])
      if (connection.idle || isLingering(socket)) socket.destroy();
    for (const tunnel of this.tunnels) if (isLingering(tunnel)) tunnel.destroy();
  }

  /** An HTTP/1.1 caller on the raw path. */
  private serveHttp1(socket: Socket): void {
    const http1 = this.http1 as NonNullable<typeof this.http1>;
    http1.connections.set(socket, new Http1Connection(http1.listener, socket, () => http1.connections.delete(socket)));
  }

  /**
   * Takes over the TLS server's connection handling: authenticate the peer (mTLS) first, then hand the
   * socket to HTTP/1.1 (the https server's own listener, with its timeouts and connection tracking) or
   * to the HTTP/2 server, by the protocol ALPN chose.
   */
  private dispatchByAlpn(mtls: boolean, limits: InboundLimits): void {
    const listeners = this.server.listeners('secureConnection');
    // https.Server has exactly one: its HTTP/1.1 connection listener. Anything else is a Node we do not know.
    if (listeners.length !== 1) throw new Error('unexpected https.Server: expected one secureConnection listener');
    const http1 = listeners[0] as (socket: TLSSocket) => void;
    this.server.removeAllListeners('secureConnection');
    this.server.on('secureConnection', (socket: TLSSocket) => {
      if (mtls) {
        const peer = this.admission.connect(socket, this.rotation?.previousBundles());
        if (socket.destroyed) return;
        logConnectionAccepted(this.options.log, socket, peer);
        if (peer?.method === 'mtls' && peer.notAfter !== undefined) this.deadlines.certificate(socket, peer.notAfter);
      } else logConnectionAccepted(this.options.log, socket, undefined);
      if (socket.alpnProtocol !== 'h2') {
        if (this.http1) this.serveHttp1(socket);
        else http1.call(this.server, socket);
        return;
      }
      // The session is created, and 'session' emitted, synchronously inside emit('connection').
      this.acceptingH2 = socket;
      this.http2 ??= this.createHttp2Server(limits);
      this.http2.emit('connection', socket);
      this.acceptingH2 = undefined;
    });
  }

  /** The HTTP/2 server that serves the `h2` connections dispatchByAlpn hands it. */
  private createHttp2Server(limits: InboundLimits): http2.Http2Server {
    // At most 100 streams at once per HTTP/2 connection (RFC 9113 recommends no fewer): one connection
    // must not hold thousands of requests open against the app.
    const server = process.getBuiltinModule('node:http2').createServer({
      settings: { maxHeaderListSize: limits.maxHeaderBytes, maxConcurrentStreams: MAX_H2_STREAMS },
      // Room past --max-header-count (and the pseudo-headers), so that the excess is answered 431 by
      // admission rather than reset by nghttp2.
      maxHeaderListPairs: limits.maxHeaderCount + 16,
    });
    server.on('session', (session: http2.ServerHttp2Session) => {
      const socket = this.acceptingH2;
      if (!socket) {
        session.destroy();
        return;
      }
      this.sessionSockets.set(session, socket);
      this.h2Sessions.add(session);
      session.once('close', () => this.h2Sessions.delete(session));
      session.on('error', () => session.destroy());
      // An idle session (no frames either way) is closed like an idle keep-alive connection.
      session.setTimeout(limits.idleTimeoutMs, () => {
        session.close();
        // close() waits for open streams, and a stream whose headers never complete never ends: give
        // them the header timeout, then cut the connection.
        setTimeout(() => session.destroy(), limits.headerTimeoutMs).unref();
      });
      if (this.draining) session.close();
    });
    server.on(
      'stream',
      (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) =>
        this.handleH2(stream, headers, rawHeaders),
    );
    return server;
  }

  /**
   * A connection has outlived what admitted it (connection-deadline.ts): an HTTP/2 session gets GOAWAY, an idle
   * HTTP/1.1 connection is closed and a busy one once its response is written; whatever is still open after
   * the header timeout (a long stream or upload, a WebSocket) is cut. Admission refuses what arrives meanwhile.
   */
  private expire(socket: Socket, cause: DeadlineCause): void {
    this.options.log.info(
      { event: 'connection_expired', remote: socket.remoteAddress, by: cause },
      cause === 'certificate'
        ? "closing a connection at its client certificate's notAfter"
        : "closing a connection at its last token's exp",
    );
    setTimeout(() => socket.destroy(), this.options.limits.headerTimeoutMs).unref();
    for (const [session, under] of this.sessionSocketList()) if (under === socket) return void session.close();
    const raw = this.http1?.connections.get(socket);
    if (raw) return void raw.closeWhenIdle();
    if (this.busy.has(socket)) this.expired.add(socket);
    else socket.destroy();
  }

  /** A request admitted by a token: its connection may last until the latest such token's exp. */
  private holdForToken(socket: Socket, a: Admission & { admitted: true }): void {
    const { identity } = a;
    if (identity.method === 'mtls' || identity.method === 'api-key') return;
    const exp = identity.claims?.exp;
    if (typeof exp === 'number') this.deadlines.token(socket, exp * 1000);
  }

  /** The HTTP/2 sessions and the TLS socket under each. */
  private *sessionSocketList(): Iterable<[http2.ServerHttp2Session, TLSSocket | undefined]> {
    for (const session of this.h2Sessions) yield [session, this.sessionSockets.get(session)];
  }

  /**
   * Runs admission, then `go` with the admitted caller; a refusal is answered, an error fails closed. The
   * exchange learns the decision either way.
   */
  private admitThen(
    head: RequestHead,
    ex: Exchange,
    refuse: (a: Admission & { admitted: false }) => void,
    go: (a: Admission & { admitted: true }) => void,
  ): void {
    const settle = (a: Admission) => {
      ex.judged(a);
      if (a.admitted) {
        this.holdForToken(head.socket, a);
        go(a);
      } else refuse(a);
    };
    const admission = this.admission.admit(head);
    if (admission instanceof Promise) admission.then(settle).catch((err: unknown) => this.failClosed(head.socket, err));
    else settle(admission);
  }

  /** An unexpected error while deciding about a request: log it and drop the connection (fail closed). */
  private failClosed(socket: Socket, err: unknown): void {
    this.options.log.error({ event: 'internal_error', err }, 'request handling failed; connection closed');
    socket.destroy();
  }

  /**
   * The request as the app gets it: its line, and the fields stripped and set for the app (its id among
   * them). `--log-level debug` names the fields the caller sent under names we own.
   */
  private target(
    head: RequestHead,
    admitted: Admission & { admitted: true },
    ex: Exchange,
    endStream: boolean,
    upgrade?: 'websocket',
  ): ForwardTarget {
    const { log } = this.options;
    const stripped = log.isLevelEnabled('debug') ? [] : undefined;
    const fields = upstreamRequestHeaders(
      head.rawHeaders,
      admitted,
      this.headerPolicy,
      admitted.owned,
      originOf(this.forwarding, head.socket),
      upgrade,
      ex,
      stripped,
    );
    if (stripped?.length)
      log.debug(
        { event: 'caller_headers_stripped', request_id: ex.id, names: stripped },
        'fields the caller sent under names the sidecar sets were removed',
      );
    return { method: head.method ?? 'GET', url: head.url ?? '/', fields, endStream };
  }

  /** An HTTP/1.1 request. */
  private handle(req: IncomingMessage, res: ServerResponse, expectsContinue = false): void {
    const ex = new Exchange(
      this.access,
      'http/1.1',
      req.method,
      req.url,
      req.socket.remoteAddress,
      req.headers.traceparent,
    );
    // Before any listener of the forwarders: the exchange ends as the caller saw it.
    this.busy.add(req.socket);
    res.once('close', () => {
      ex.end(res.headersSent ? res.statusCode : 0, !res.writableFinished);
      this.busy.delete(req.socket);
      if (this.expired.has(req.socket)) req.socket.destroy();
    });
    if (this.draining) res.setHeader('connection', 'close');
    const reply: Reply = (a, keepAlive = false) => {
      ex.bytesOut += writeAnswerH1(res, a, keepAlive && bodyArrived(req));
      req.resume();
    };
    this.admitThen(
      req,
      ex,
      (refused) => (refused.answer ? reply(refused.answer, refused.keepAlive) : req.socket.destroy()),
      (admitted) => {
        if (expectsContinue && !bodyArrived(req)) res.writeContinue();
        const target = this.target(req, admitted, ex, false);
        if (this.forwarding.h2c) {
          forwardToH2c(this.forwarding, { res, body: req }, req.socket, target, reply, ex);
        } else {
          forwardH1(this.forwarding, req, res, target, reply, ex);
        }
      },
    );
  }

  /** An HTTP/2 request: admitted like an HTTP/1.1 one, answered on its stream. */
  private handleH2(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, rawHeaders: string[]): void {
    // A client may reset a stream at any time (RST_STREAM): that is an 'error' on it, never the process's.
    stream.on('error', () => {});
    const session = stream.session as http2.ServerHttp2Session;
    const socket = this.sessionSockets.get(session);
    const method = headers[':method'] ?? '';
    const url = headers[':path'];
    const ex = new Exchange(this.access, 'h2', method, url, socket?.remoteAddress, headers.traceparent);
    stream.once('close', () =>
      ex.end(stream.headersSent ? Number(stream.sentHeaders[':status']) : 0, !stream.writableFinished),
    );
    // Reset by the client before the end of our answer: counted against the connection's reset budget.
    const counts = this.streamCounts.get(session) ?? { opened: 0, reset: 0 };
    this.streamCounts.set(session, counts);
    counts.opened++;
    stream.once('aborted', () => {
      ex.fail('caller_reset');
      this.countReset(session, counts);
    });
    const reply: Reply = (a) => {
      if (stream.destroyed || stream.closed || stream.headersSent) return;
      ex.bytesOut += writeAnswerH2(stream, a);
    };
    // Methods are case-sensitive tokens; `delete` would miss a DELETE rule here and reach the app as
    // DELETE (Node upper-cases it). Only upper-case methods are served.
    if (!/^[A-Z]{1,20}$/.test(method)) {
      this.refuseH2(reply, answer(400, 'bad_method'), socket);
      return;
    }
    // A :path outside visible ASCII (HTTP/2 carries raw bytes; an HTTP/1.1 request target cannot hold them, and
    // the HTTP/1.1 engine refuses them): latin1 to us, UTF-8 or something else to the app behind.
    if (url !== undefined && !VISIBLE_ASCII_TARGET.test(url)) {
      this.refuseH2(reply, answer(400, 'bad_request_target'), socket);
      return;
    }
    // RFC 9113 §8.3.1: a `host` that disagrees with `:authority` makes the request malformed.
    if (headers.host !== undefined && headers[':authority'] !== undefined && headers.host !== headers[':authority']) {
      this.refuseH2(reply, answer(400, 'authority_mismatch'), socket);
      return;
    }
    if (!socket || url === undefined || method === 'CONNECT') {
      // No extended CONNECT (WebSocket over HTTP/2): like other upgrades, it would tunnel past the headers.
      this.refuseH2(reply, answer(400, 'unsupported_method'), socket);
      return;
    }
    const head: RequestHead = { method, url, headers, socket, rawHeaders: h2RequestToH1(rawHeaders) };
    // The RST_STREAM that follows HEADERS in the same packet is read after this event: admit once the
    // whole packet has been read, so that a stream already reset is never forwarded.
    setImmediate(() => {
      if (stream.destroyed || stream.closed) return;
      this.admitThen(
        head,
        ex,
        (refused) => (refused.answer ? reply(refused.answer) : socket.destroy()),
        (admitted) => {
          // A stream the client has already reset gets nothing, least of all a connection to the app
          // (HTTP/2 rapid reset: thousands of HEADERS+RST_STREAM pairs in a few packets).
          if (stream.destroyed || stream.closed) return;
          if (headers.expect === '100-continue' && !stream.endAfterHeaders)
            stream.additionalHeaders({ ':status': 100 });
          const target = this.target(head, admitted, ex, stream.endAfterHeaders);
          if (this.forwarding.h2c) forwardToH2c(this.forwarding, { h2: stream }, socket, target, reply, ex);
          else forwardH2ToH1(this.forwarding, stream, socket, target, reply, ex);
        },
      );
    });
  }

  /** An HTTP/2 request refused before authentication: answered, and logged as the HTTP/1.1 ones are. */
  private refuseH2(reply: Reply, a: Answer, socket: TLSSocket | undefined): void {
    logRequestRefused(this.options.log, this.metrics, a.reason, a.status, socket?.remoteAddress);
    reply(a);
  }

  /** One more stream reset by the client before our answer; past half of the streams, the connection goes. */
  private countReset(session: http2.ServerHttp2Session, counts: { opened: number; reset: number }): void {
    counts.reset++;
    if (counts.opened < MIN_STREAMS_JUDGED || counts.reset * 2 <= counts.opened || session.destroyed) return;
    const socket = this.sessionSockets.get(session);
    this.options.log.warn(
      { event: 'connection_closed', reason: 'too_many_resets', remote: socket?.remoteAddress },
      'HTTP/2 client reset too many streams',
    );
    // One GOAWAY, with this code (goaway() then destroy() would send a second one, NO_ERROR).
    session.destroy(new Error('too many streams reset'), H2_ENHANCE_YOUR_CALM);
  }

  /**
   * An HTTP/1.1 upgrade request: admitted like any request; only WebSocket is tunnelled. Its access line is
   * written when the caller's connection closes (the tunnel's end): one line with the bytes and the time
   * the tunnel carried, as for any other exchange, rather than a line at the switch that could tell
   * neither. A tunnel cut by a drain or a revocation closes too, so its line is never lost to a shutdown.
   */
  private handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    // node:http no longer listens on the socket it handed over: a caller's reset must not be the process's error.
    socket.on('error', () => {});
    const ex = new Exchange(
      this.access,
      'websocket',
      req.method,
      req.url,
      socket.remoteAddress,
      req.headers.traceparent,
    );
    this.tunnelUpgrade(req, ex, head);
  }

  /**
   * An upgrade request on a socket that is now the tunnel's (node:http's or the raw path's): admitted like any
   * request, and only WebSocket is tunnelled. `early`: bytes the caller sent past the head.
   */
  private tunnelUpgrade(head: RequestHead, ex: Exchange, early: Buffer): void {
    const socket = head.socket;
    // What the socket had read before the body: the request head.
    ex.countSocket(socket, socket.bytesRead - early.length);
    // Either side may end a tunnel: only a drain that ran out of time cuts it.
    socket.once('close', () => ex.end(ex.status, this.access.cutByDrain));
    const refuse = (a: Answer) => {
      ex.status = a.status;
      // Tracked as tunnels are (node:http no longer does): a drain closes it while it lingers.
      this.tunnels.add(socket);
      socket.once('close', () => this.tunnels.delete(socket));
      ex.headWritten(writeAnswerRaw(socket, a));
    };
    this.admitThen(
      head,
      ex,
      (refused) => (refused.answer ? refuse(refused.answer) : socket.destroy()),
      (admitted) => {
        // Only WebSocket: any other protocol (h2c, custom) would tunnel requests past header stripping.
        if (!isWebSocketUpgrade(head)) {
          refuse(answer(400, 'unsupported_upgrade'));
          return;
        }
        const target = this.target(head, admitted, ex, false, 'websocket');
        tunnelWebSocket(this.forwarding, socket, early, target, this.tunnels, ex);
      },
    );
  }
}
