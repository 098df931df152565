// The inbound listener: terminates mTLS with our SVID, authenticates the peer once per connection
// (a peer that fails is disconnected before a byte reaches the app), applies the policy to each request,
// and forwards allowed requests (and WebSocket upgrades) to the app with verified identity headers.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { PeerIdentity } from '../authn/identity.js';
import { authenticateTlsPeer } from '../authn/mtls.js';
import type { Decision, Policy } from '../authz/policy.js';
import { noMetrics, type ProxyMetrics } from '../admin/metrics.js';
import { SidecarError } from '../errors.js';
import { allAuthoritiesPem, type IdentitySource, type X509Identity } from '../identity/source.js';
import type { Logger } from '../log.js';
import { downstreamResponseHeaders, type HeaderPolicy, protectedNames, upstreamRequestHeaders } from './headers.js';

export interface InboundOptions {
  host: string;
  port: number;
  /** The app: an http: origin. */
  upstream: URL;
  identity: IdentitySource;
  policy: Policy;
  headers: Omit<HeaderPolicy, 'self'>;
  log: Logger;
  limits: InboundLimits;
  metrics?: ProxyMetrics;
}

/** Resource limits of the listener (README, "Limits"). */
export interface InboundLimits {
  /** A TLS handshake must complete within this. */
  handshakeTimeoutMs: number;
  /** The request line and headers must arrive within this (slowloris). */
  headerTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  idleTimeoutMs: number;
  /** Request line plus headers, in bytes; more gets 431. */
  maxHeaderBytes: number;
  /** Open connections; more are closed at once. */
  maxConnections: number;
  /** The app must send its response headers within this, or the caller gets 504. */
  upstreamTimeoutMs: number;
}

export const DEFAULT_LIMITS: InboundLimits = Object.freeze({
  handshakeTimeoutMs: 10_000,
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  maxHeaderBytes: 16 * 1024,
  maxConnections: 10_000,
  upstreamTimeoutMs: 60_000,
});

interface PeerState {
  identity: PeerIdentity;
  /** The policy depends only on the identity today, so it is decided once per connection. */
  decision: Decision;
}

const MAX_LOGGED_PATH = 256;

/** Everything of the TLS context; setSecureContext() rebuilds it from these options alone. */
function tlsOptions(identity: X509Identity) {
  return {
    minVersion: 'TLSv1.2' as const,
    // No session resumption: a resumed session carries only the peer's leaf, not the intermediates it
    // sent, so its chain could not be verified again. Every connection is a full, verified handshake.
    secureOptions: constants.SSL_OP_NO_TICKET,
    cert: identity.svid.chainPem,
    key: identity.svid.keyPem,
    // OpenSSL pre-checks peer chains against every trusted authority (expiry, signatures, constraints,
    // purpose); authenticateTlsPeer requires that verdict and then re-verifies against the bundle of
    // the peer's own trust domain, which OpenSSL cannot do.
    ca: allAuthoritiesPem(identity.bundles),
  };
}

function jsonBody(error: string, reason: string): string {
  return JSON.stringify({ error, reason });
}

/** Path for the audit log: no query string (it may carry secrets), bounded length. */
function auditPath(url: string | undefined): string {
  const path = (url ?? '').split('?', 1)[0];
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}...` : path;
}

export class InboundProxy {
  private readonly server: https.Server;
  private readonly agent = new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  private readonly peers = new WeakMap<Socket, PeerState>();
  private readonly owned: ReadonlySet<string>;
  private readonly headerPolicy: HeaderPolicy;
  private readonly unsubscribe: () => void;
  private readonly metrics: ProxyMetrics;
  /** Upgraded (WebSocket) sockets: the HTTP server no longer tracks them, a drain must. */
  private readonly tunnels = new Set<Socket>();
  private draining = false;

  private constructor(private readonly options: InboundOptions) {
    const { identity, log, limits } = options;
    this.metrics = options.metrics ?? noMetrics;
    this.headerPolicy = { ...options.headers, self: () => identity.current().svid.id };
    this.owned = protectedNames(options.headers);
    this.server = https.createServer({
      ...tlsOptions(identity.current()),
      requestCert: true,
      // Node checks the chain only after the handshake either way; we make the call ourselves in
      // authenticate() so that every rejected peer is logged with its reason.
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      handshakeTimeout: limits.handshakeTimeoutMs,
      headersTimeout: limits.headerTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      maxHeaderSize: limits.maxHeaderBytes,
      // How often Node checks the header timeout: a tenth of it, so a slowloris is cut close to the limit.
      connectionsCheckingInterval: Math.max(100, Math.floor(limits.headerTimeoutMs / 10)),
    });
    this.server.maxConnections = limits.maxConnections;
    this.server.on('drop', () => {
      this.metrics.connectionDropped();
      log.warn({ event: 'connection_dropped', reason: 'max_connections' }, 'connection limit reached');
    });
    this.server.on('connection', (socket: Socket) => {
      this.metrics.connectionOpened();
      socket.once('close', () => this.metrics.connectionClosed());
    });
    this.server.on('secureConnection', (socket) => this.authenticate(socket));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      const reason = err.code ?? 'ERR_TLS';
      this.metrics.handshake('failure', reason);
      log.info({ event: 'tls_rejected', reason, remote: socket.remoteAddress }, err.message);
    });
    this.server.on('request', (req, res) => this.handle(req, res));
    this.server.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket as Socket, head));
    // New identity material applies to new connections only; open ones finish on the old.
    this.unsubscribe = identity.onUpdate((next) => this.server.setSecureContext(tlsOptions(next)));
  }

  static async start(options: InboundOptions): Promise<InboundProxy> {
    const proxy = new InboundProxy(options);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) =>
        reject(
          new SidecarError(
            'ERR_LISTEN',
            `--listen ${options.host}:${options.port}: cannot listen (${err.code ?? err.message}); pick a free port or stop the process that holds it`,
            { cause: err },
          ),
        );
      proxy.server.once('error', onError);
      proxy.server.listen(options.port, options.host, () => {
        proxy.server.off('error', onError);
        resolve();
      });
    });
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
    const timer = setTimeout(() => {
      this.server.closeAllConnections();
      for (const tunnel of this.tunnels) tunnel.destroy();
    }, timeoutMs);
    await closed;
    clearTimeout(timer);
    for (const tunnel of this.tunnels) tunnel.destroy();
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      this.server.closeAllConnections();
    });
    this.agent.destroy();
  }

  private authenticate(socket: TLSSocket): void {
    const { identity, policy, log } = this.options;
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
    this.peers.set(socket, { identity: result.identity, decision: policy(result.identity) });
  }

  /** The connection's verified state, logging the decision; undefined means the socket was closed. */
  private authorize(req: IncomingMessage): PeerState | undefined {
    const state = this.peers.get(req.socket);
    if (!state) {
      // Unreachable unless a request raced authentication: fail closed.
      req.socket.destroy();
      return undefined;
    }
    const { decision, identity } = state;
    this.metrics.decision(decision.allow ? 'allow' : 'deny', decision.allow ? 'rule_matched' : decision.reason);
    this.options.log.info(
      {
        event: 'authz',
        peer: identity.id.toString(),
        method: req.method,
        path: auditPath(req.url),
        decision: decision.allow ? 'allow' : 'deny',
        ...(decision.allow ? { rule: decision.rule } : { reason: decision.reason }),
      },
      'authorization decision',
    );
    return state;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    let upstreamSeconds: number | undefined;
    res.once('finish', () =>
      this.metrics.request(res.statusCode, (performance.now() - started) / 1000, upstreamSeconds),
    );
    if (this.draining) res.setHeader('connection', 'close');
    const state = this.authorize(req);
    if (!state) return;
    if (!state.decision.allow) {
      res.writeHead(403, { 'content-type': 'application/json' }).end(jsonBody('forbidden', state.decision.reason));
      req.resume();
      return;
    }
    const { upstream, log, limits } = this.options;
    const upstreamReq = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: upstreamRequestHeaders(req.rawHeaders, state.identity, this.headerPolicy, this.owned),
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
      upstreamSeconds = (performance.now() - started) / 1000;
      const headers = downstreamResponseHeaders(upstreamRes.rawHeaders);
      if (this.draining) headers.push('connection', 'close');
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, headers);
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

  private handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const state = this.authorize(req);
    if (!state) return;
    const refuse = (status: string, body: string) =>
      socket.end(
        `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    if (!state.decision.allow) {
      refuse('403 Forbidden', jsonBody('forbidden', state.decision.reason));
      return;
    }
    // Only WebSocket: any other protocol (h2c, custom) would tunnel requests past header stripping.
    if (req.method !== 'GET' || req.headers.upgrade?.trim().toLowerCase() !== 'websocket') {
      refuse('400 Bad Request', jsonBody('bad_request', 'unsupported_upgrade'));
      return;
    }
    const { upstream } = this.options;
    const upstreamReq = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: upstreamRequestHeaders(req.rawHeaders, state.identity, this.headerPolicy, this.owned, 'websocket'),
      setHost: false,
      agent: false,
    });
    const writeHead = (res: IncomingMessage) => {
      const lines = [`HTTP/1.1 ${res.statusCode} ${res.statusMessage}`];
      for (let i = 0; i < res.rawHeaders.length; i += 2) lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    };
    upstreamReq.on('upgrade', (res, upstreamSocket, upstreamHead) => {
      writeHead(res);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      this.tunnels.add(socket);
      pipeline(upstreamSocket, socket, upstreamSocket, () => {
        this.tunnels.delete(socket);
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
