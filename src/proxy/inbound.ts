// The inbound listener: terminates mTLS with our SVID, authenticates the peer once per connection
// (a peer that fails is disconnected before a byte reaches the app), applies the policy to each request,
// and forwards allowed requests (and WebSocket upgrades) to the app with verified identity headers.

import type { IncomingMessage, ServerResponse } from 'node:http';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { admitPeer } from './peer-gate.js';
import { relay, type RelayWatch } from './relay.js';
import { checkRequestHead, type HeadRefusal } from './request-checks.js';
import { startResponseTimer } from './response-timer.js';
import type { TLSSocket } from 'node:tls';
import { describePeer, type PeerIdentity } from '../authn/identity.js';
import type { JwtAuthenticator } from '../authn/jwt.js';
import type { Authorizer, Decision } from '../authz/policy.js';
import { type ApiKeySet, presentedApiKey } from '../authn/api-keys.js';
import { noMetrics, type ProxyMetrics } from '../admin/proxy-metrics.js';
import type { IdentitySource } from '../identity/source.js';
import type { X509BundleSet } from '../spiffe/bundle.js';
import { closeNow, listen } from '../listener.js';
import { serverTlsOptions as tlsOptions } from './server-tls.js';
import { H2cUpstream } from './h2c-upstream.js';
import { forwardH2Response } from './h2-response.js';
import { h1FieldsToH2, h2RequestToH1, h2ResponseToH1, respondH2 } from './http2-headers.js';
import type { InboundLimits } from './limits.js';
import type { Logger } from '../log.js';
import {
  downstreamResponseHeaders,
  type HeaderPolicy,
  protectedNames,
  type RequestOrigin,
  upstreamRequestHeaders,
} from './headers.js';

export interface InboundOptions {
  host: string;
  port: number;
  /** The app: an http: origin. */
  upstream: URL;
  /** Our X.509 identity: required for mTLS and for JWT over TLS; absent for JWT over plain HTTP. */
  identity?: IdentitySource;
  auth: { mode: 'mtls' } | { mode: 'jwt'; authenticator: JwtAuthenticator };
  authorizer: Authorizer;
  /** `--policy-mode dry-run`: denials are logged and counted, and the request goes through. */
  dryRun?: boolean;
  /** `--api-keys-file`: the keys in force. In mTLS mode a caller without a certificate must send one. */
  apiKeys?: () => ApiKeySet;
  headers: Omit<HeaderPolicy, 'self' | 'apiKeys'>;
  /** How the app is reached: HTTP/1.1 (default) or cleartext HTTP/2 (`--upstream-protocol h2c`, for gRPC). */
  upstreamProtocol?: 'h1' | 'h2c';
  log: Logger;
  limits: InboundLimits;
  metrics?: ProxyMetrics;
}

/** An mTLS connection: its verified peer, or none (no certificate, API keys accepted). */
interface PeerState {
  identity?: PeerIdentity;
  /** With allow flags the decision depends on the caller alone: made once per connection. */
  decision?: Decision;
}

/** What authorization reads of a request, HTTP/1.1 or HTTP/2 (whose socket is the session's TLS socket). */
type RequestLike = Pick<IncomingMessage, 'method' | 'url' | 'headers' | 'socket'>;

/** One request's caller and decision. */
interface RequestState {
  identity: PeerIdentity;
  decision: Decision;
  /** The caller's API key came in `Authorization`: it must not reach the app. */
  keyInAuthorization?: boolean;
}

type BodyTimeoutReason = 'request_body_timeout' | 'request_body_too_slow';
type RelayTimeoutReason = BodyTimeoutReason | 'response_write_timeout' | 'tunnel_idle_timeout';
/** `--request-body-min-rate` applies once a body has been read for this long (Kestrel's grace period). */
const MIN_RATE_GRACE_MS = 5_000;

const MAX_LOGGED_PATH = 256;
const MAX_H2_STREAMS = 100;
/**
 * HTTP/2 "rapid reset" (CVE-2023-44487): streams a client resets before we answered, per connection per
 * second; more and the connection gets GOAWAY(ENHANCE_YOUR_CALM). A client cancelling its own calls stays
 * far below (nghttp2's own default is 33 per second after a burst of 1000: we never open an app connection
 * for a stream already reset, so a burst costs little, but it must not go on for ever).
 */
const MAX_H2_RESETS_PER_SECOND = 100;
const API_KEY_BEARER = /^Bearer sk_/i;

/** Any `Authorization` field carries an API key: Node shows only the first one in `headers`. */
function carriesKeyInAuthorization(req: RequestLike): boolean {
  const raw = (req as Partial<IncomingMessage>).rawHeaders;
  if (!raw) return API_KEY_BEARER.test(String(req.headers.authorization ?? ''));
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() === 'authorization' && API_KEY_BEARER.test(raw[i + 1])) return true;
  }
  return false;
}

function jsonBody(error: string, reason: string): string {
  return JSON.stringify({ error, reason });
}

/** The status of a denial: 429 (with Retry-After) when rate limited, 400 for a path without a normal form. */
function refusal(decision: Decision & { allow: false }): [number, Record<string, string>] {
  if (decision.reason === 'rate_limited') return [429, { 'retry-after': String(decision.retryAfterSeconds ?? 1) }];
  if (decision.reason === 'path_not_normalized') return [400, {}];
  return [403, {}];
}

/**
 * The whole request has arrived: Node says so only after the 'request' event, so a request that frames
 * no body (RFC 9112 §6.3: neither Content-Length nor Transfer-Encoding) counts as arrived from the start.
 */
function bodyArrived(req: IncomingMessage): boolean {
  if (req.complete) return true;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

/** The content type in a flat field list, if any. */
function contentTypeOf(fields: readonly string[]): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i].toLowerCase() === 'content-type') return fields[i + 1];
  return undefined;
}

/** Path for the audit log: no query string (it may carry secrets), bounded length. */
function auditPath(url: string | undefined): string {
  const path = (url ?? '').split('?', 1)[0];
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}...` : path;
}

export class InboundProxy {
  private readonly server: http.Server;
  /** Connections to the app: bounded like the callers' (HTTP/2 multiplexes many requests on one). */
  private readonly agent: http.Agent;
  private readonly peers = new WeakMap<Socket, PeerState>();
  private readonly owned: ReadonlySet<string>;
  private readonly ownedWithAuthorization: ReadonlySet<string>;
  private readonly headerPolicy: HeaderPolicy;
  private readonly unsubscribe: () => void;
  private readonly metrics: ProxyMetrics;
  /** Upgraded (WebSocket) sockets: the HTTP server no longer tracks them, a drain must. */
  private readonly tunnels = new Set<Socket>();
  /** HTTP/2 callers (ALPN `h2`): their sessions, and the TLS socket under each (its verified peer). */
  private readonly http2: http2.Http2Server;
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();
  private readonly sessionSockets = new WeakMap<http2.ServerHttp2Session, TLSSocket>();
  /** Streams each HTTP/2 connection's client reset, in the current second (rapid reset). */
  private readonly resetBudgets = new WeakMap<http2.ServerHttp2Session, { second: number; resets: number }>();
  private acceptingH2: TLSSocket | undefined;
  private readonly h2c: H2cUpstream | undefined;
  private draining = false;
  /** The bundle sets of the current and the previous TLS context (resumed sessions: see mtls.ts). */
  private currentBundles: X509BundleSet | undefined;
  private previousBundles: X509BundleSet | undefined;

  private constructor(private readonly options: InboundOptions) {
    const { identity, log, limits, auth } = options;
    this.metrics = options.metrics ?? noMetrics;
    this.currentBundles = identity?.status().ready ? identity.current().bundles : undefined;
    const apiKeys = options.apiKeys !== undefined;
    this.headerPolicy = {
      ...options.headers,
      apiKeys,
      self: () => (identity as IdentitySource).current().svid.id,
    };
    this.owned = protectedNames(this.headerPolicy);
    this.ownedWithAuthorization = protectedNames({ ...this.headerPolicy, stripAuthorization: true });
    const httpOptions = {
      // No limit on a whole request (long uploads and streams are legitimate); the header, idle and
      // upstream timeouts bound the rest. Node requires headersTimeout <= requestTimeout otherwise.
      requestTimeout: 0,
      headersTimeout: limits.headerTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      // Node keeps the first N fields and drops the rest silently: one more than allowed, so that
      // checkRequestHead sees the excess and answers 431.
      maxHeadersCount: limits.maxHeaderCount + 1,
      // How often Node checks the header timeout: a tenth of it, so a slowloris is cut close to the limit.
      connectionsCheckingInterval: Math.max(100, Math.floor(limits.headerTimeoutMs / 10)),
    };
    if (auth.mode === 'mtls' && !identity) throw new Error('mTLS needs an identity source');
    // JWT mode over plain HTTP has no TLS at all; otherwise we serve our SVID, and ask for the
    // caller's only in mTLS mode.
    this.server = identity
      ? https.createServer({
          ...tlsOptions(identity.current()),
          requestCert: auth.mode === 'mtls',
          // Node checks the chain only after the handshake either way; we make the call ourselves in
          // authenticate() so that every rejected peer is logged with its reason.
          rejectUnauthorized: false,
          // One port for both: HTTP/2 when the client offers it (gRPC always does), else HTTP/1.1.
          ALPNProtocols: ['h2', 'http/1.1'],
          handshakeTimeout: limits.handshakeTimeoutMs,
          ...httpOptions,
        })
      : http.createServer(httpOptions);
    this.server.maxConnections = limits.maxConnections;
    this.server.on('drop', () => {
      this.metrics.connectionDropped();
      log.warn({ event: 'connection_dropped', reason: 'max_connections' }, 'connection limit reached');
    });
    this.server.on('connection', (socket: Socket) => {
      this.metrics.connectionOpened();
      socket.once('close', () => this.metrics.connectionClosed());
    });
    this.h2c = options.upstreamProtocol === 'h2c' ? new H2cUpstream(options.upstream) : undefined;
    this.agent = new http.Agent({ keepAlive: true, scheduling: 'lifo', maxSockets: limits.maxConnections });
    // At most 100 streams at once per HTTP/2 connection (RFC 9113 recommends no fewer): one connection
    // must not hold thousands of requests open against the app.
    this.http2 = http2.createServer({
      settings: { maxHeaderListSize: limits.maxHeaderBytes, maxConcurrentStreams: MAX_H2_STREAMS },
      // Room past --max-header-count (and the pseudo-headers), so that the excess is answered 431 by
      // checkRequestHead rather than reset by nghttp2.
      maxHeaderListPairs: limits.maxHeaderCount + 16,
    });
    if (identity) this.dispatchByAlpn(auth.mode === 'mtls', limits);
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      const reason = err.code ?? 'ERR_TLS';
      this.metrics.handshake('failure', reason);
      log.info({ event: 'tls_rejected', reason, remote: socket.remoteAddress }, err.message);
    });
    this.server.on('request', (req, res) => this.handle(req, res));
    // `Expect: 100-continue`: answered by us, and only once the caller is admitted. A refused caller gets
    // its 401/403 and never an invitation to send the body.
    this.server.on('checkContinue', (req, res) => this.handle(req, res, true));
    this.server.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket as Socket, head));
    // New identity material applies to new connections only; open ones finish on the old.
    const offUpdate =
      identity?.onUpdate((next) => {
        this.previousBundles = this.currentBundles;
        this.currentBundles = next.bundles;
        (this.server as https.Server).setSecureContext(tlsOptions(next));
      }) ?? (() => {});
    // On revocation, idle keep-alive connections and tunnels go too (requests on busy ones get 503).
    const offRevoke =
      identity?.onRevoked?.(() => {
        this.server.closeIdleConnections();
        for (const tunnel of this.tunnels) tunnel.destroy();
        for (const session of this.h2Sessions) session.close();
      }) ?? (() => {});
    this.unsubscribe = () => {
      offUpdate();
      offRevoke();
    };
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
    this.server.closeIdleConnections();
    // A response under way when the drain began leaves a keep-alive connection idle later: keep closing.
    const sweep = setInterval(() => this.server.closeIdleConnections(), 100);
    // HTTP/2: GOAWAY, so that clients open no new streams here while the open ones finish.
    for (const session of this.h2Sessions) session.close();
    const timer = setTimeout(() => {
      this.server.closeAllConnections();
      for (const tunnel of this.tunnels) tunnel.destroy();
      for (const session of this.h2Sessions) session.destroy();
    }, timeoutMs);
    await closed;
    clearInterval(sweep);
    clearTimeout(timer);
    for (const tunnel of this.tunnels) tunnel.destroy();
  }

  async close(): Promise<void> {
    this.unsubscribe();
    for (const session of this.h2Sessions) session.destroy();
    await closeNow(this.server);
    this.agent.destroy();
    this.h2c?.close();
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
        this.authenticate(socket);
        if (socket.destroyed) return;
      }
      if (socket.alpnProtocol !== 'h2') {
        http1.call(this.server, socket);
        return;
      }
      // The session is created, and 'session' emitted, synchronously inside emit('connection').
      this.acceptingH2 = socket;
      this.http2.emit('connection', socket);
      this.acceptingH2 = undefined;
    });
    this.http2.on('session', (session: http2.ServerHttp2Session) => {
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
    this.http2.on(
      'stream',
      (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) =>
        this.handleH2(stream, headers, rawHeaders),
    );
  }

  private authenticate(socket: TLSSocket): void {
    const { log, apiKeys } = this.options;
    const identity = this.options.identity as IdentitySource;
    // Without a certificate, a caller is admitted only where API keys are accepted: then every request on
    // this connection must carry one.
    const gate = admitPeer(socket, identity, this.previousBundles, log, this.metrics, apiKeys !== undefined);
    if (gate.admitted) this.peers.set(socket, { identity: gate.identity });
  }

  /**
   * The request's caller and decision, logged. mTLS: the peer was verified once per connection. JWT: the
   * bearer token is checked per request (cached per token). An API key, where accepted, is checked per
   * request. A failure is answered here (401, or 503 while no keys are loaded) and resolves to undefined,
   * as does a connection that was closed.
   */
  private authorize(
    req: RequestLike,
    reply: (status: number, body: string, headers?: Record<string, string>) => void,
  ): RequestState | undefined | Promise<RequestState | undefined> {
    const { auth } = this.options;
    if (auth.mode === 'jwt') {
      if (this.options.apiKeys && presentedApiKey(req.headers) !== undefined) return this.authenticateKey(req, reply);
      return auth.authenticator.authenticate(req.headers.authorization).then((result) => {
        if (!result.ok) {
          this.options.log.warn(
            { event: 'peer_rejected', auth: 'jwt', reason: result.rejection.reason, remote: req.socket.remoteAddress },
            result.rejection.message,
          );
          // RFC 6750 §3: no error code when the request carried no token at all.
          const challenge = result.rejection.reason === 'ERR_JWT_MISSING' ? 'Bearer' : 'Bearer error="invalid_token"';
          if (result.status === 503) reply(503, jsonBody('unavailable', 'no_keys'));
          else reply(401, jsonBody('unauthorized', result.rejection.reason), { 'www-authenticate': challenge });
          return undefined;
        }
        return this.decide(req, result.identity);
      });
    }
    const state = this.peers.get(req.socket);
    if (!state) {
      // Unreachable unless a request raced authentication: fail closed.
      req.socket.destroy();
      return undefined;
    }
    if (this.revoked()) {
      reply(503, jsonBody('unavailable', 'identity_revoked'), { connection: 'close' });
      return undefined;
    }
    if (!state.identity) return this.authenticateKey(req, reply);
    return this.decide(req, state.identity, state);
  }

  /** A caller with an API key (`x-api-key` or `Authorization: Bearer sk_...`): one key, known, unexpired. */
  private authenticateKey(
    req: RequestLike,
    reply: (status: number, body: string, headers?: Record<string, string>) => void,
  ): RequestState | undefined {
    const presented = presentedApiKey(req.headers);
    const result =
      presented === undefined
        ? ({
            ok: false,
            rejection: { reason: 'ERR_API_KEY_MISSING', message: 'no client certificate and no API key' },
          } as const)
        : presented === 'ambiguous'
          ? ({ ok: false, rejection: { reason: 'ERR_API_KEY_UNKNOWN', message: 'more than one API key' } } as const)
          : (this.options.apiKeys as () => ApiKeySet)().authenticate(presented.key, Date.now());
    if (!result.ok) {
      this.options.log.warn(
        { event: 'peer_rejected', auth: 'api_key', reason: result.rejection.reason, remote: req.socket.remoteAddress },
        result.rejection.message,
      );
      reply(401, jsonBody('unauthorized', result.rejection.reason), { 'www-authenticate': 'Bearer' });
      return undefined;
    }
    return this.decide(req, result.identity);
  }

  /** An unexpected error while deciding about a request: log it and drop the connection (fail closed). */
  private failClosed(socket: Socket, err: unknown): void {
    this.options.log.error({ event: 'internal_error', err }, 'request handling failed; connection closed');
    socket.destroy();
  }

  /** mTLS with a revoked identity: nothing may pass in its name, not even on connections opened before. */
  private revoked(): boolean {
    return this.options.auth.mode === 'mtls' && this.options.identity?.status().reason === 'identity_revoked';
  }

  /**
   * Decides (once per connection when the decision depends on the caller alone), counts and audit-logs.
   * In dry-run mode a denial is logged and counted as such, and the request is let through.
   */
  private decide(req: RequestLike, identity: PeerIdentity, connection?: PeerState): RequestState {
    const { authorizer, dryRun } = this.options;
    let decision = connection?.decision;
    if (!decision) {
      decision = authorizer.decide(identity, req.method ?? '', req.url ?? '');
      if (connection && !authorizer.perRequest) connection.decision = decision;
    }
    // Dry-run lifts the rules' denials only: a key's own route limits and unparseable paths still hold.
    const wouldDeny =
      !decision.allow &&
      dryRun === true &&
      decision.reason !== 'key_route_denied' &&
      decision.reason !== 'path_not_normalized';
    this.metrics.decision(
      decision.allow ? 'allow' : wouldDeny ? 'dry_run_deny' : 'deny',
      decision.allow ? 'rule_matched' : decision.reason,
    );
    this.options.log.info(
      {
        event: 'authz',
        peer: describePeer(identity),
        auth: identity.method,
        method: req.method,
        path: auditPath(req.url),
        decision: decision.allow ? 'allow' : 'deny',
        ...(wouldDeny ? { dry_run: true } : {}),
        ...(decision.rule !== undefined ? { rule: decision.rule } : {}),
        ...(decision.allow ? {} : { reason: decision.reason }),
      },
      'authorization decision',
    );
    if (!decision.allow && wouldDeny) decision = { allow: true, rule: `dry-run (${decision.rule ?? decision.reason})` };
    // An API key in Authorization never reaches the app, whoever sent it (even a caller with a certificate).
    const keyInAuthorization = this.options.apiKeys !== undefined && carriesKeyInAuthorization(req);
    return { identity, decision, keyInAuthorization };
  }

  private handle(req: IncomingMessage, res: ServerResponse, expectsContinue = false): void {
    const started = performance.now();
    let upstreamSeconds: number | undefined;
    res.once('finish', () =>
      this.metrics.request(res.statusCode, (performance.now() - started) / 1000, upstreamSeconds),
    );
    if (this.draining) res.setHeader('connection', 'close');
    // An answer of our own closes the connection once written (RFC 9112 §9.6), so that the rest of a
    // refused body is never waited for and a caller cannot hold the connection by trickling one. Only an
    // authenticated caller refused by the rules, whose request has fully arrived, keeps its connection.
    const reply = (status: number, body: string, headers: Record<string, string> = {}, keepAlive = false) => {
      if (res.headersSent) return;
      const close = keepAlive && bodyArrived(req) ? {} : { connection: 'close' };
      res.writeHead(status, { 'content-type': 'application/json', ...headers, ...close }).end(body);
      req.resume();
    };
    const head = checkRequestHead(req.rawHeaders, this.options.limits.maxHeaderCount);
    if (head) {
      this.refuseHead(head, req.socket, reply);
      return;
    }
    const state = this.authorize(req, reply);
    const forward = (s: RequestState) =>
      this.forward(req, res, s, reply, expectsContinue, started, (t) => (upstreamSeconds = t));
    if (state instanceof Promise) {
      state.then((s) => s && forward(s)).catch((err: unknown) => this.failClosed(req.socket, err));
    } else if (state) {
      forward(state);
    }
  }

  /** A request head we will not forward, whoever sent it: logged, and answered (the connection closes). */
  private refuseHead(head: HeadRefusal, socket: Socket, reply: (status: number, body: string) => void): void {
    this.options.log.warn(
      { event: 'request_refused', reason: head.reason, status: head.status, remote: socket.remoteAddress },
      'request refused before authentication',
    );
    const error = head.status === 431 ? 'headers_too_large' : head.status === 501 ? 'not_implemented' : 'bad_request';
    reply(head.status, jsonBody(error, head.reason));
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    state: RequestState,
    reply: (status: number, body: string, headers?: Record<string, string>, keepAlive?: boolean) => void,
    expectsContinue: boolean,
    started: number,
    reached: (upstreamSeconds: number) => void,
  ): void {
    if (!state.decision.allow) {
      const [status, headers] = refusal(state.decision);
      const error = status === 403 ? 'forbidden' : status === 429 ? 'too_many_requests' : 'bad_request';
      reply(status, jsonBody(error, state.decision.reason), headers, true);
      return;
    }
    if (expectsContinue && !bodyArrived(req)) res.writeContinue();
    if (this.h2c) {
      const fields = upstreamRequestHeaders(
        req.rawHeaders,
        state.identity,
        this.headerPolicy,
        this.ownedFor(state),
        this.origin(req.socket),
      );
      const target = { method: req.method ?? 'GET', url: req.url ?? '/', fields, endStream: false };
      this.exchangeH2c({ res, body: req }, target, () => reached((performance.now() - started) / 1000), reply);
      return;
    }
    const { upstream, log, limits } = this.options;
    const upstreamReq = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: upstreamRequestHeaders(
        req.rawHeaders,
        state.identity,
        this.headerPolicy,
        this.ownedFor(state),
        this.origin(req.socket),
      ),
      setHost: false,
      agent: this.agent,
    });
    let timedOut = false;
    let stalled = false;
    const timer = startResponseTimer(upstreamReq, limits.upstreamTimeoutMs, () => {
      timedOut = true;
      upstreamReq.destroy(new Error(`the app sent no response headers within ${limits.upstreamTimeoutMs} ms`));
    });
    upstreamReq.on('response', (upstreamRes) => {
      timer.clear();
      reached((performance.now() - started) / 1000);
      const headers = downstreamResponseHeaders(upstreamRes.rawHeaders);
      if (this.draining) headers.push('connection', 'close');
      try {
        // Never the app's reason phrase: Node's parser accepts bytes that writeHead refuses (a crash).
        res.writeHead(upstreamRes.statusCode ?? 502, headers);
      } catch (err) {
        upstreamReq.destroy();
        fail(err as Error);
        return;
      }
      relay(
        upstreamRes,
        res,
        undefined,
        this.responseWatch(req.socket, () => {
          upstreamRes.destroy();
          res.destroy();
        }),
      );
    });
    const fail = (err: Error) => {
      timer.clear();
      if (stalled) return;
      const reason = timedOut ? 'upstream_timeout' : 'upstream_unreachable';
      this.metrics.upstreamError(reason);
      if (!res.headersSent) {
        log.warn({ event: 'upstream_error', reason: (err as NodeJS.ErrnoException).code ?? reason }, err.message);
        const [status, error] = timedOut ? [504, 'gateway_timeout'] : [502, 'bad_gateway'];
        res.writeHead(status, { 'content-type': 'application/json' }).end(jsonBody(error, reason));
      } else {
        res.destroy(err);
      }
    };
    upstreamReq.on('error', fail);
    relay(
      req,
      upstreamReq,
      (err) => {
        if (err && !upstreamReq.destroyed) fail(err);
      },
      this.requestBodyWatch(req.socket, req.headers['content-type'], (reason) => {
        stalled = true;
        timer.clear();
        upstreamReq.destroy();
        if (res.headersSent) res.destroy();
        else reply(408, jsonBody('request_timeout', reason));
      }),
    );
    res.on('close', () => {
      timer.clear();
      if (!res.writableFinished) upstreamReq.destroy();
    });
  }

  /** Who connected, for X-Forwarded-For and X-Forwarded-Proto. */
  private origin(socket: Socket): RequestOrigin {
    return { address: socket.remoteAddress, proto: this.options.identity ? 'https' : 'http' };
  }

  /**
   * `--request-body-timeout`: a caller that stops sending its body while we wait for it; and
   * `--request-body-min-rate`: one that trickles it. `onStall` answers (408, or cuts a response under way)
   * and closes; this logs. gRPC streams are exempt from the rate: a client stream may rightly send one
   * message a minute.
   */
  private requestBodyWatch(
    socket: Socket,
    contentType: string | string[] | undefined,
    onStall: (reason: BodyTimeoutReason) => void,
  ): RelayWatch {
    const { requestBodyTimeoutMs, requestBodyMinRate } = this.options.limits;
    const grpc = typeof contentType === 'string' && contentType.startsWith('application/grpc');
    return {
      sourceIdleMs: requestBodyTimeoutMs,
      sourceMinRate:
        requestBodyMinRate > 0 && !grpc
          ? { bytesPerSecond: requestBodyMinRate, afterMs: MIN_RATE_GRACE_MS }
          : undefined,
      onStall: (stall) => {
        const reason = stall === 'source_too_slow' ? 'request_body_too_slow' : 'request_body_timeout';
        this.stalled(reason, socket);
        onStall(reason);
      },
    };
  }

  /** `--response-write-timeout`: a caller that takes no byte of its response while we have some for it. */
  private responseWatch(socket: Socket, onStall: () => void): RelayWatch {
    return {
      destinationStallMs: this.options.limits.responseWriteTimeoutMs,
      onStall: () => {
        this.stalled('response_write_timeout', socket);
        onStall();
      },
    };
  }

  private stalled(reason: RelayTimeoutReason, socket: Socket): void {
    this.options.log.warn({ event: 'request_timeout', reason, remote: socket.remoteAddress }, 'the caller stalled');
  }

  /** An HTTP/2 request: authorized like an HTTP/1.1 one, answered on its stream. */
  private handleH2(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, rawHeaders: string[]): void {
    // A client may reset a stream at any time (RST_STREAM): that is an 'error' on it, never the process's.
    stream.on('error', () => {});
    const session = stream.session as http2.ServerHttp2Session;
    const socket = this.sessionSockets.get(session);
    const started = performance.now();
    let upstreamSeconds: number | undefined;
    let status = 0;
    stream.once('close', () => {
      if (status) this.metrics.request(status, (performance.now() - started) / 1000, upstreamSeconds);
    });
    // Reset by the client before the end of our answer: counted against the connection's reset budget.
    stream.once('aborted', () => this.countReset(session));
    const reply = (code: number, body: string, extra: Record<string, string> = {}) => {
      if (stream.destroyed || stream.closed || stream.headersSent) return;
      status = code;
      // `connection` is HTTP/1.1 only: HTTP/2 forbids it (RFC 9113 §8.2.2).
      const fields = Object.fromEntries(Object.entries(extra).filter(([name]) => name !== 'connection'));
      stream.respond({ ':status': code, 'content-type': 'application/json', ...fields });
      stream.end(body);
      // The rest of a refused request's body is not waited for (RFC 9113 §8.1: a complete response, then
      // RST_STREAM(NO_ERROR), sent once the response is out).
      if (!stream.readableEnded) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    const method = headers[':method'] ?? '';
    const url = headers[':path'];
    // Methods are case-sensitive tokens; `delete` would miss a DELETE rule here and reach the app as
    // DELETE (Node upper-cases it). Only upper-case methods are served.
    if (!/^[A-Z]{1,20}$/.test(method)) {
      reply(400, jsonBody('bad_request', 'bad_method'));
      return;
    }
    // RFC 9113 §8.3.1: a `host` that disagrees with `:authority` makes the request malformed.
    if (headers.host !== undefined && headers[':authority'] !== undefined && headers.host !== headers[':authority']) {
      reply(400, jsonBody('bad_request', 'authority_mismatch'));
      return;
    }
    if (!socket || url === undefined || method === 'CONNECT') {
      // No extended CONNECT (WebSocket over HTTP/2): like other upgrades, it would tunnel past the headers.
      reply(400, jsonBody('bad_request', 'unsupported_method'));
      return;
    }
    const fieldsIn = h2RequestToH1(rawHeaders);
    const head = checkRequestHead(fieldsIn, this.options.limits.maxHeaderCount);
    if (head) {
      this.refuseHead(head, socket, reply);
      return;
    }
    const req = { method, url, headers: headers as IncomingMessage['headers'], socket };
    const state = this.authorize(req, reply);
    const go = (s: RequestState | undefined) => {
      // A stream the client has already reset gets nothing, least of all a connection to the app
      // (HTTP/2 rapid reset: thousands of HEADERS+RST_STREAM pairs in a few packets).
      if (!s || stream.destroyed || stream.closed) return;
      if (!s.decision.allow) {
        const [code, extra] = refusal(s.decision);
        const error = code === 403 ? 'forbidden' : code === 429 ? 'too_many_requests' : 'bad_request';
        reply(code, jsonBody(error, s.decision.reason), extra);
        return;
      }
      if (headers.expect === '100-continue' && !stream.endAfterHeaders) stream.additionalHeaders({ ':status': 100 });
      const fields = upstreamRequestHeaders(
        fieldsIn,
        s.identity,
        this.headerPolicy,
        this.ownedFor(s),
        this.origin(socket),
      );
      const target = { method, url, fields, endStream: stream.endAfterHeaders };
      const reached = (code: number) => {
        status = code;
        upstreamSeconds = (performance.now() - started) / 1000;
      };
      if (this.h2c) this.exchangeH2c({ h2: stream }, target, reached, reply);
      else this.exchangeH2ToH1(stream, target, reached, reply);
    };
    // The RST_STREAM that follows HEADERS in the same packet is read after this event: decide once the
    // whole packet has been read.
    setImmediate(() => {
      if (state instanceof Promise) state.then(go).catch((err: unknown) => this.failClosed(socket, err));
      else go(state);
    });
  }

  /** One more stream reset by the client; past the budget, the connection goes (ENHANCE_YOUR_CALM). */
  private countReset(session: http2.ServerHttp2Session): void {
    const now = Math.floor(performance.now() / 1000);
    let budget = this.resetBudgets.get(session);
    if (!budget || budget.second !== now) {
      budget = { second: now, resets: 0 };
      this.resetBudgets.set(session, budget);
    }
    if (++budget.resets !== MAX_H2_RESETS_PER_SECOND + 1) return;
    const socket = this.sessionSockets.get(session);
    this.options.log.warn(
      { event: 'connection_closed', reason: 'too_many_resets', remote: socket?.remoteAddress },
      'HTTP/2 client reset too many streams',
    );
    // One GOAWAY, with this code (goaway() then destroy() would send a second one, NO_ERROR).
    session.destroy(new Error('too many streams reset'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /** HTTP/2 caller, HTTP/1.1 app. */
  private exchangeH2ToH1(
    stream: http2.ServerHttp2Stream,
    target: { method: string; url: string; fields: string[]; endStream: boolean },
    reached: (status: number) => void,
    reply: (code: number, body: string) => void,
  ): void {
    const { upstream, limits } = this.options;
    const fields = [...target.fields];
    // A body of unknown length must be framed for HTTP/1.1, whatever the method: an unframed body would be
    // read by the app as a second request.
    const hasLength = fields.some((_, i) => i % 2 === 0 && fields[i].toLowerCase() === 'content-length');
    if (!target.endStream && !hasLength) fields.push('transfer-encoding', 'chunked');
    const upstreamReq = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: target.method,
      path: target.url,
      headers: fields,
      setHost: false,
      agent: this.agent,
    });
    const socket = this.sessionSockets.get(stream.session as http2.ServerHttp2Session) as TLSSocket;
    const abort = () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    let stalled = false;
    const timer = startResponseTimer(upstreamReq, limits.upstreamTimeoutMs, () => {
      upstreamReq.destroy();
      this.upstreamFailed('upstream_timeout', stream.headersSent, reply, abort);
    });
    let complete = false;
    upstreamReq.on('response', (res) => {
      timer.clear();
      res.once('end', () => (complete = true));
      const status = res.statusCode ?? 502;
      reached(status);
      const { headers } = h1FieldsToH2(downstreamResponseHeaders(res.rawHeaders));
      if (stream.destroyed) {
        res.destroy();
        return;
      }
      if (!respondH2(stream, status, headers)) {
        res.destroy();
        this.metrics.upstreamError('upstream_unreachable');
        reply(502, jsonBody('bad_gateway', 'bad_response'));
        return;
      }
      relay(
        res,
        stream,
        undefined,
        this.responseWatch(socket, () => {
          res.destroy();
          abort();
        }),
      );
    });
    upstreamReq.on('error', () => {
      timer.clear();
      if (stalled) return;
      this.upstreamFailed('upstream_unreachable', stream.headersSent, reply, abort);
    });
    if (target.endStream) upstreamReq.end();
    else {
      relay(
        stream,
        upstreamReq,
        undefined,
        this.requestBodyWatch(socket, contentTypeOf(target.fields), (reason) => {
          stalled = true;
          timer.clear();
          upstreamReq.destroy();
          if (stream.headersSent) abort();
          else reply(408, jsonBody('request_timeout', reason));
        }),
      );
    }
    stream.once('close', () => {
      timer.clear();
      if (!complete) upstreamReq.destroy();
    });
  }

  /** Any caller, HTTP/2 app (`--upstream-protocol h2c`): streams both ways, trailers included (gRPC). */
  private exchangeH2c(
    downstream: { h2: http2.ServerHttp2Stream } | { res: ServerResponse; body: IncomingMessage },
    target: { method: string; url: string; fields: string[]; endStream: boolean },
    reached: (status: number) => void,
    reply: (code: number, body: string) => void,
  ): void {
    const { upstream, limits } = this.options;
    const { headers, host } = h1FieldsToH2(target.fields);
    let up: http2.ClientHttp2Stream;
    try {
      up = (this.h2c as H2cUpstream).request(
        {
          ...headers,
          ':method': target.method,
          ':path': target.url,
          ':scheme': 'http',
          ':authority': host ?? upstream.host,
        },
        target.endStream,
      );
    } catch {
      this.upstreamFailed('upstream_unreachable', false, reply, () => {});
      return;
    }
    const h2 = 'h2' in downstream ? downstream.h2 : undefined;
    const res = 'res' in downstream ? downstream.res : undefined;
    const socket = (h2 ? this.sessionSockets.get(h2.session as http2.ServerHttp2Session) : res?.socket) as Socket;
    const sent = () => (h2 ? h2.headersSent : (res as ServerResponse).headersSent);
    const abort = () => (h2 ? h2.close(http2.constants.NGHTTP2_INTERNAL_ERROR) : (res as ServerResponse).destroy());
    let stalled = false;
    const timer = startResponseTimer(up, limits.upstreamTimeoutMs, () => {
      up.close(http2.constants.NGHTTP2_CANCEL);
      this.upstreamFailed('upstream_timeout', sent(), reply, abort);
    });
    const cut = () => {
      up.close(http2.constants.NGHTTP2_CANCEL);
      abort();
    };
    up.on('response', (responseHeaders) => {
      timer.clear();
      const status = Number(responseHeaders[':status'] ?? 502);
      reached(status);
      if (h2) {
        if (h2.destroyed) return;
        if (!forwardH2Response(up, h2, responseHeaders, this.responseWatch(socket, cut)))
          reply(502, jsonBody('bad_gateway', 'bad_response'));
      } else {
        const out = res as ServerResponse;
        try {
          out.writeHead(status, h2ResponseToH1(responseHeaders));
        } catch {
          up.close(http2.constants.NGHTTP2_CANCEL);
          reply(502, jsonBody('bad_gateway', 'bad_response'));
          return;
        }
        // HTTP/1.1 callers get the body; trailers need chunked encoding and a client that reads them.
        relay(up, out, undefined, this.responseWatch(socket, cut));
      }
    });
    up.on('error', () => {
      timer.clear();
      if (stalled) return;
      this.upstreamFailed('upstream_unreachable', sent(), reply, abort);
    });
    if (!target.endStream) {
      const source = h2 ?? ('body' in downstream ? downstream.body : undefined);
      if (source) {
        relay(
          source,
          up,
          undefined,
          this.requestBodyWatch(socket, contentTypeOf(target.fields), (reason) => {
            stalled = true;
            timer.clear();
            up.close(http2.constants.NGHTTP2_CANCEL);
            if (sent()) abort();
            else reply(408, jsonBody('request_timeout', reason));
          }),
        );
      }
    }
    const closed = h2 ?? res;
    closed?.once('close', () => {
      timer.clear();
      if (!up.closed) up.close(http2.constants.NGHTTP2_CANCEL);
    });
  }

  /** The app failed: a 502/504 if nothing was sent yet, else the response is cut. */
  private upstreamFailed(
    reason: 'upstream_timeout' | 'upstream_unreachable',
    headersSent: boolean,
    reply: (code: number, body: string) => void,
    abort: () => void,
  ): void {
    this.metrics.upstreamError(reason);
    if (headersSent) {
      abort();
      return;
    }
    this.options.log.warn({ event: 'upstream_error', reason }, 'the app did not answer');
    if (reason === 'upstream_timeout') reply(504, jsonBody('gateway_timeout', reason));
    else reply(502, jsonBody('bad_gateway', reason));
  }

  /** Header names the client may not pass on: ours, plus `Authorization` when it carried the API key. */
  private ownedFor(state: RequestState): ReadonlySet<string> {
    // `--jwt-forward-token` forwards the token this request was admitted by, and nothing else: a caller
    // admitted by its API key must not slip an unverified token to the app next to it.
    const admittedByKeyInJwtMode = this.options.auth.mode === 'jwt' && state.identity.method === 'api_key';
    return state.keyInAuthorization || admittedByKeyInJwtMode ? this.ownedWithAuthorization : this.owned;
  }

  private handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const refuse = (status: string, body: string, extra = '') =>
      socket.end(
        `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`,
      );
    const reply = (status: number, body: string, headers: Record<string, string> = {}) =>
      refuse(
        `${status} ${http.STATUS_CODES[status]}`,
        body,
        Object.entries(headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join(''),
      );
    const refused = checkRequestHead(req.rawHeaders, this.options.limits.maxHeaderCount);
    if (refused) {
      this.refuseHead(refused, req.socket, reply);
      return;
    }
    const state = this.authorize(req, reply);
    if (state instanceof Promise) {
      state
        .then((s) => s && this.tunnel(req, socket, head, s, refuse))
        .catch((err: unknown) => this.failClosed(socket, err));
    } else if (state) this.tunnel(req, socket, head, state, refuse);
  }

  private tunnel(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    state: RequestState,
    refuse: (status: string, body: string, extra?: string) => void,
  ): void {
    if (!state.decision.allow) {
      const [status, headers] = refusal(state.decision);
      const error = status === 403 ? 'forbidden' : status === 429 ? 'too_many_requests' : 'bad_request';
      const extra = Object.entries(headers)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      refuse(`${status} ${http.STATUS_CODES[status]}`, jsonBody(error, state.decision.reason), extra);
      return;
    }
    // Only WebSocket: any other protocol (h2c, custom) would tunnel requests past header stripping.
    if (req.method !== 'GET' || req.headers.upgrade?.trim().toLowerCase() !== 'websocket') {
      refuse('400 Bad Request', jsonBody('bad_request', 'unsupported_upgrade'));
      return;
    }
    const { upstream, limits } = this.options;
    // Tracked from now on: the HTTP server no longer sees this socket, and a drain must be able to end it.
    this.tunnels.add(socket);
    socket.once('close', () => this.tunnels.delete(socket));
    const upstreamReq = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: upstreamRequestHeaders(
        req.rawHeaders,
        state.identity,
        this.headerPolicy,
        this.ownedFor(state),
        this.origin(socket),
        'websocket',
      ),
      setHost: false,
      agent: false,
    });
    const timer = setTimeout(() => {
      upstreamReq.destroy();
      if (!socket.destroyed) refuse('504 Gateway Timeout', jsonBody('gateway_timeout', 'upstream_timeout'));
    }, limits.upstreamTimeoutMs);
    upstreamReq.once('upgrade', () => clearTimeout(timer));
    upstreamReq.once('response', () => clearTimeout(timer));
    upstreamReq.once('close', () => clearTimeout(timer));
    const writeHead = (res: IncomingMessage) => {
      const lines = [`HTTP/1.1 ${res.statusCode} ${res.statusMessage}`];
      for (let i = 0; i < res.rawHeaders.length; i += 2) lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    };
    upstreamReq.on('upgrade', (res, upstreamSocket, upstreamHead) => {
      writeHead(res);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      pipeline(upstreamSocket, socket, upstreamSocket, () => {
        upstreamSocket.destroy();
        socket.destroy();
      });
      // `--tunnel-idle-timeout`: no byte either way (the caller's socket sees both directions).
      socket.setTimeout(limits.tunnelIdleTimeoutMs, () => {
        this.options.log.warn(
          { event: 'request_timeout', reason: 'tunnel_idle_timeout', remote: socket.remoteAddress },
          'idle WebSocket tunnel closed',
        );
        upstreamSocket.destroy();
        socket.destroy();
      });
    });
    upstreamReq.on('response', (res) => {
      // The app declined the upgrade: relay its answer and close.
      writeHead(res);
      pipeline(res, socket, () => socket.destroy());
    });
    upstreamReq.on('error', () => {
      if (!socket.destroyed) refuse('502 Bad Gateway', jsonBody('bad_gateway', 'upstream_unreachable'));
    });
    socket.on('error', () => upstreamReq.destroy());
    upstreamReq.end();
  }
}
