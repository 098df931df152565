// L4 mode (`--protocol tcp`): terminates mTLS, authenticates and authorizes the peer once, and only then
// connects to the app and relays bytes both ways, with back-pressure and half-close. A denied peer is
// disconnected before the app sees a connection. With `--proxy-protocol v2` the app first receives a
// PROXY v2 header with the peer's addresses and verified SPIFFE ID.
import { connect, type AddressInfo, type Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { noMetrics, type ProxyMetrics } from './proxy-metrics.js';
import { describePeer, type PeerIdentity } from '../authn/identity.js';
import { admitPeer, logConnectionAccepted } from './peer-gate.js';
import type { Authorizer, Decision } from '../authz/policy.js';
import type { IdentitySource } from '../identity/source.js';
import { listen } from '../listener.js';
import type { Logger } from '../log.js';
import type { InboundLimits } from './limits.js';
import { proxyV2Header } from './proxy-protocol.js';
import { relayBytes } from './byte-relay.js';
import { accountConnections } from './connection-accounting.js';
import { ConnectionDeadlines } from './connection-deadline.js';
import { serverTlsOptions } from './server-tls.js';
import { TlsIntake } from './tls-intake.js';
import { followRotation, type RotationFollower } from './tls-listener.js';

export type TcpUpstream = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export interface TcpInboundOptions {
  host: string;
  port: number;
  upstream: TcpUpstream;
  identity: IdentitySource;
  authorizer: Authorizer;
  /** Send a PROXY protocol v2 header to the app before the first byte. */
  proxyProtocol: boolean;
  log: Logger;
  limits: InboundLimits;
  metrics?: ProxyMetrics;
}

export class TcpInboundProxy {
  private readonly server: Server;
  private readonly metrics: ProxyMetrics;
  /** Every accepted connection, so that a drain or a revocation can end them. */
  private readonly sockets = new Set<Socket>();
  private readonly rotation: RotationFollower;
  /** A relay ends with the client certificate that admitted it. */
  private readonly deadlines = new ConnectionDeadlines((socket) => {
    this.options.log.info(
      { event: 'connection_expired', remote: socket.remoteAddress, by: 'certificate' },
      "closing a connection at its client certificate's notAfter",
    );
    socket.destroy();
  });

  private constructor(private readonly options: TcpInboundOptions) {
    const { identity, limits, log } = options;
    this.metrics = options.metrics ?? noMetrics;
    this.server = createServer({
      // Each direction ends on its own: a client that has sent everything may still read the answer.
      allowHalfOpen: true,
      // No TLS of its own: connections are wrapped by the intake (tls-intake.ts says why). An empty trust
      // list spares it Node's root store.
      ca: [],
    });
    const intake = new TlsIntake(this.server, serverTlsOptions(identity.current()), {
      requestCert: true,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
    });
    const accounting = { maxConnections: limits.maxConnections, metrics: this.metrics, log, identity };
    accountConnections(this.server, accounting, (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.server.on('secureConnection', (socket: TLSSocket) => this.accept(socket));
    this.rotation = followRotation(intake, identity, {
      initialBundles: identity.current().bundles,
      // A revoked identity ends every relayed connection: nothing may pass in its name.
      onRevoked: () => this.destroyAll(),
    });
  }

  static async start(options: TcpInboundOptions): Promise<TcpInboundProxy> {
    const proxy = new TcpInboundProxy(options);
    await listen(proxy.server, options.host, options.port, '--listen');
    return proxy;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stop accepting; open connections may finish for up to `timeoutMs`, then they are cut. */
  async drain(timeoutMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const timer = setTimeout(() => this.destroyAll(), timeoutMs);
    await closed;
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    this.rotation.stop();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.destroyAll();
    await closed;
  }

  private destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  private accept(socket: TLSSocket): void {
    const { identity, authorizer, log } = this.options;
    const gate = admitPeer(socket, identity, this.rotation.previousBundles(), log, this.metrics);
    if (!gate.admitted) return;
    if (!gate.identity) {
      socket.destroy();
      return;
    }
    const peer = gate.identity;
    logConnectionAccepted(log, socket, peer);
    const decision = authorizer.decide(peer, 'CONNECT', '/');
    // A shared rate-limit store answers later: the caller may have left meanwhile.
    if (decision instanceof Promise) {
      decision.then(
        (d) => (socket.destroyed ? undefined : this.judged(socket, peer, d)),
        () => socket.destroy(),
      );
    } else this.judged(socket, peer, decision);
  }

  /**
   * Counts and logs the decision (every one: the audit trail); an allowed peer is relayed to the app, a
   * denied one disconnected. One line per connection, at the decision.
   */
  private judged(socket: TLSSocket, peer: PeerIdentity, decision: Decision): void {
    const { log } = this.options;
    this.metrics.decision(decision.allow ? 'allow' : 'deny', decision.allow ? 'rule_matched' : decision.reason, 'mtls');
    log.info(
      {
        event: 'authz',
        peer: describePeer(peer),
        auth: peer.method,
        protocol: 'tcp',
        remote: socket.remoteAddress,
        decision: decision.allow ? 'allow' : 'deny',
        ...(decision.allow ? { rule: decision.rule } : { reason: decision.reason }),
      },
      'authorization decision',
    );
    if (!decision.allow) {
      socket.destroy();
      return;
    }
    // Bytes have no requests to refuse one by one: the relay is cut when the certificate expires.
    if (peer.method === 'mtls' && peer.notAfter !== undefined) this.deadlines.certificate(socket, peer.notAfter);
    this.relay(socket, describePeer(peer));
  }

  private relay(socket: TLSSocket, spiffeId: string): void {
    const { upstream, proxyProtocol, limits, log } = this.options;
    const app =
      upstream.kind === 'tcp'
        ? connect({ host: upstream.host, port: upstream.port, allowHalfOpen: true })
        : connect({ path: upstream.path, allowHalfOpen: true });
    if (proxyProtocol) {
      // Queued before any relayed byte: the app reads the header first.
      app.write(
        proxyV2Header({
          source: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
          destination: { address: socket.localAddress ?? '', port: socket.localPort ?? 0 },
          spiffeId,
          tlsVersion: socket.getProtocol() ?? '',
          resumed: socket.isSessionReused(),
        }),
      );
    }
    let reached = false;
    app.once('connect', () => (reached = true));
    relayBytes(socket, app, {
      idleTimeoutMs: limits.idleTimeoutMs,
      // An error before the app accepted our connection means it is unreachable; later ones just end the relay.
      onError: (err) => {
        if (reached) return;
        this.metrics.upstreamError('upstream_unreachable');
        log.warn(
          { event: 'upstream_error', reason: 'upstream_unreachable', error: (err as NodeJS.ErrnoException).code },
          err.message,
        );
      },
    });
  }
}
