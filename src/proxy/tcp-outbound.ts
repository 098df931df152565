// Outbound L4 routes (`--outbound LISTEN=tls://HOST:PORT,id=RULE`): the app connects in plain TCP to a
// loopback port; the sidecar opens mTLS to the remote with our SVID, verifies the remote's identity, and
// only then relays bytes both ways (back-pressure, half-close, idle timeout). Until the remote is
// verified the app's bytes stay unread, so none reaches an unverified peer.
import { isIP, type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { IdentitySource } from '../identity/source.js';
import { listen } from '../listener.js';
import type { Logger } from '../log.js';
import type { IdMatcher } from '../spiffe/match.js';
import { relayBytes } from './byte-relay.js';
import { connectVerified } from './verified-connect.js';
import { certificateAlertOf } from './connection-accounting.js';

export interface TcpOutboundRoute {
  host: string;
  port: number;
  /** The remote, as `tls://host:port`. */
  remote: URL;
  expect: IdMatcher;
  expectText: string;
  limits: { handshakeTimeoutMs: number; idleTimeoutMs: number; maxConnections: number };
}

export class TcpOutboundProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly route: TcpOutboundRoute,
    private readonly identity: IdentitySource | undefined,
    private readonly log: Logger,
  ) {
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (app) => this.accept(app));
    this.server.maxConnections = route.limits.maxConnections;
  }

  static async start(route: TcpOutboundRoute, identity: IdentitySource | undefined, log: Logger) {
    const proxy = new TcpOutboundProxy(route, identity, log);
    await listen(proxy.server, route.host, route.port, '--outbound');
    return proxy;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private accept(app: Socket): void {
    const { route, log } = this;
    this.sockets.add(app);
    app.once('close', () => this.sockets.delete(app));
    app.on('error', () => app.destroy());
    if (this.identity?.status().ready === false) {
      log.warn({ event: 'outbound_rejected', remote: route.remote.host, reason: 'no_identity' }, 'no identity yet');
      app.destroy();
      return;
    }
    const host = route.remote.hostname.replace(/^\[|\]$/g, '');
    const remote = connectVerified(
      this.identity,
      { auth: 'mtls', expect: route.expect, expectText: route.expectText, limits: route.limits },
      // allowHalfOpen: the remote may still answer after the app has finished sending.
      {
        host,
        port: Number(route.remote.port),
        ...(isIP(host) ? {} : { servername: host }),
        ...({ allowHalfOpen: true } as object),
      },
      [],
      log,
      (err) => {
        if (err) {
          const reason = (err as { reason?: string }).reason ?? 'remote_unreachable';
          log.warn(
            { event: 'outbound_rejected', remote: route.remote.host, expected: route.expectText, reason },
            err.message,
          );
          app.destroy();
          return;
        }
        this.relay(app, remote);
      },
    );
    app.once('close', () => remote.destroy());
  }

  private relay(app: Socket, remote: Socket): void {
    const { route, log } = this;
    relayBytes(app, remote, {
      idleTimeoutMs: route.limits.idleTimeoutMs,
      // TLS 1.3: a remote that will not accept our certificate says so after our side of the handshake is done,
      // with an alert that arrives as the relay's first error.
      onError: (err) => {
        if (certificateAlertOf(err) === undefined) return;
        log.warn(
          {
            event: 'outbound_rejected',
            remote: route.remote.host,
            expected: route.expectText,
            reason: 'remote_refused_our_certificate',
          },
          `the remote refused our certificate: ${err.message}`,
        );
      },
    });
    // Paused since it was accepted (pauseOnConnect): its bytes flow only now that the remote is verified.
    app.resume();
  }
}
