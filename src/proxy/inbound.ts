// The inbound listener: terminates mTLS with our SVID, authenticates the peer once per connection
// (a peer that fails is disconnected before a byte reaches the app), applies the policy to each request,
// and forwards allowed requests (and WebSocket upgrades) to the app with verified identity headers.

import type { IncomingMessage, ServerResponse } from 'node:http';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { describePeer, type PeerIdentity } from '../authn/identity.js';
import type { JwtAuthenticator } from '../authn/jwt.js';
import { authenticateTlsPeer } from '../authn/mtls.js';
import type { Authorizer, Decision } from '../authz/policy.js';
import { type ApiKeySet, presentedApiKey } from '../authn/api-keys.js';
import { noMetrics, type ProxyMetrics } from '../admin/metrics.js';
import type { IdentitySource } from '../identity/source.js';
import { closeNow, listen } from '../listener.js';
import { serverTlsOptions as tlsOptions } from './server-tls.js';
import type { InboundLimits } from './limits.js';
import type { Logger } from '../log.js';
import { downstreamResponseHeaders, type HeaderPolicy, protectedNames, upstreamRequestHeaders } from './headers.js';

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

/** One request's caller and decision. */
interface RequestState {
  identity: PeerIdentity;
  decision: Decision;
  /** The caller's API key came in `Authorization`: it must not reach the app. */
  keyInAuthorization?: boolean;
}

const MAX_LOGGED_PATH = 256;
const API_KEY_BEARER = /^Bearer sk_/i;

function jsonBody(error: string, reason: string): string {
  return JSON.stringify({ error, reason });
}

/** The status of a denial: 429 (with Retry-After) when rate limited, 400 for a path without a normal form. */
function refusal(decision: Decision & { allow: false }): [number, Record<string, string>] {
  if (decision.reason === 'rate_limited') return [429, { 'retry-after': String(decision.retryAfterSeconds ?? 1) }];
  if (decision.reason === 'path_not_normalized') return [400, {}];
  return [403, {}];
}

/** Path for the audit log: no query string (it may carry secrets), bounded length. */
function auditPath(url: string | undefined): string {
  const path = (url ?? '').split('?', 1)[0];
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}...` : path;
}

export class InboundProxy {
  private readonly server: http.Server;
  private readonly agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  private readonly peers = new WeakMap<Socket, PeerState>();
  private readonly owned: ReadonlySet<string>;
  private readonly ownedWithAuthorization: ReadonlySet<string>;
  private readonly headerPolicy: HeaderPolicy;
  private readonly unsubscribe: () => void;
  private readonly metrics: ProxyMetrics;
  /** Upgraded (WebSocket) sockets: the HTTP server no longer tracks them, a drain must. */
  private readonly tunnels = new Set<Socket>();
  private draining = false;

  private constructor(private readonly options: InboundOptions) {
    const { identity, log, limits, auth } = options;
    this.metrics = options.metrics ?? noMetrics;
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
          ALPNProtocols: ['http/1.1'],
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
    if (auth.mode === 'mtls') this.server.on('secureConnection', (socket: TLSSocket) => this.authenticate(socket));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      const reason = err.code ?? 'ERR_TLS';
      this.metrics.handshake('failure', reason);
      log.info({ event: 'tls_rejected', reason, remote: socket.remoteAddress }, err.message);
    });
    this.server.on('request', (req, res) => this.handle(req, res));
    this.server.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket as Socket, head));
    // New identity material applies to new connections only; open ones finish on the old.
    const offUpdate =
      identity?.onUpdate((next) => (this.server as https.Server).setSecureContext(tlsOptions(next))) ?? (() => {});
    // On revocation, idle keep-alive connections and tunnels go too (requests on busy ones get 503).
    const offRevoke =
      identity?.onRevoked?.(() => {
        this.server.closeIdleConnections();
        for (const tunnel of this.tunnels) tunnel.destroy();
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
    const timer = setTimeout(() => {
      this.server.closeAllConnections();
      for (const tunnel of this.tunnels) tunnel.destroy();
    }, timeoutMs);
    await closed;
    clearInterval(sweep);
    clearTimeout(timer);
    for (const tunnel of this.tunnels) tunnel.destroy();
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await closeNow(this.server);
    this.agent.destroy();
  }

  private authenticate(socket: TLSSocket): void {
    const { log } = this.options;
    const identity = this.options.identity as IdentitySource;
    if (identity.status().reason === 'identity_revoked') {
      // Fail closed: the Workload API withdrew our identity, so we accept no one in its name.
      log.warn(
        { event: 'connection_refused', reason: 'identity_revoked', remote: socket.remoteAddress },
        'our identity is revoked',
      );
      this.metrics.handshake('failure', 'identity_revoked');
      socket.destroy();
      return;
    }
    const result = authenticateTlsPeer(socket, identity.current().bundles);
    if (!result.ok && result.rejection.reason === 'ERR_NO_CLIENT_CERT' && this.options.apiKeys) {
      // No certificate, but API keys are accepted: every request on this connection must carry one.
      this.metrics.handshake('success', 'no_client_cert');
      this.peers.set(socket, {});
      return;
    }
    if (!result.ok) {
      log.warn(
        { event: 'peer_rejected', reason: result.rejection.reason, remote: socket.remoteAddress },
        result.rejection.message,
      );
      this.metrics.handshake('failure', result.rejection.reason);
      socket.destroy();
      return;
    }
    this.metrics.handshake('success', 'verified');
    this.peers.set(socket, { identity: result.identity });
  }

  /**
   * The request's caller and decision, logged. mTLS: the peer was verified once per connection. JWT: the
   * bearer token is checked per request (cached per token). An API key, where accepted, is checked per
   * request. A failure is answered here (401, or 503 while no keys are loaded) and resolves to undefined,
   * as does a connection that was closed.
   */
  private authorize(
    req: IncomingMessage,
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
    req: IncomingMessage,
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
  private decide(req: IncomingMessage, identity: PeerIdentity, connection?: PeerState): RequestState {
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
    const keyInAuthorization =
      this.options.apiKeys !== undefined && API_KEY_BEARER.test(req.headers.authorization ?? '');
    return { identity, decision, keyInAuthorization };
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    let upstreamSeconds: number | undefined;
    res.once('finish', () =>
      this.metrics.request(res.statusCode, (performance.now() - started) / 1000, upstreamSeconds),
    );
    if (this.draining) res.setHeader('connection', 'close');
    const reply = (status: number, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(body);
      req.resume();
    };
    const state = this.authorize(req, reply);
    if (state instanceof Promise) {
      state
        .then((s) => s && this.forward(req, res, s, started, (t) => (upstreamSeconds = t)))
        .catch((err: unknown) => this.failClosed(req.socket, err));
    } else if (state) {
      this.forward(req, res, state, started, (t) => (upstreamSeconds = t));
    }
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    state: RequestState,
    started: number,
    reached: (upstreamSeconds: number) => void,
  ): void {
    if (!state.decision.allow) {
      const [status, headers] = refusal(state.decision);
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(
        jsonBody(
          status === 403 ? 'forbidden' : status === 429 ? 'too_many_requests' : 'bad_request',
          state.decision.reason,
        ),
      );
      req.resume();
      return;
    }
    const { upstream, log, limits } = this.options;
    const upstreamReq = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: upstreamRequestHeaders(req.rawHeaders, state.identity, this.headerPolicy, this.ownedFor(state)),
      setHost: false,
      agent: this.agent,
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      upstreamReq.destroy(new Error(`the app sent no response headers within ${limits.upstreamTimeoutMs} ms`));
    }, limits.upstreamTimeoutMs);
    upstreamReq.on('response', (upstreamRes) => {
      clearTimeout(timer);
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
      pipeline(upstreamRes, res, () => {});
    });
    const fail = (err: Error) => {
      clearTimeout(timer);
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
    pipeline(req, upstreamReq, (err) => {
      if (err && !upstreamReq.destroyed) fail(err);
    });
    res.on('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) upstreamReq.destroy();
    });
  }

  /** Header names the client may not pass on: ours, plus `Authorization` when it carried the API key. */
  private ownedFor(state: RequestState): ReadonlySet<string> {
    return state.keyInAuthorization ? this.ownedWithAuthorization : this.owned;
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
