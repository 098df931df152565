// Outbound HTTP/2 routes (`--outbound LISTEN=https://HOST:PORT,id=RULE,protocol=h2`), for gRPC clients:
// the app speaks cleartext HTTP/2 (prior knowledge) to a loopback port; the sidecar carries each stream
// over one HTTP/2 session with the remote, opened with our SVID (a JWT route's: without) and only once the
// remote proved the expected SPIFFE ID; each stream carries the route's bearer token, if it has one, and
// none leaves without it (outbound.ts: routeCredential). Streams flow both ways, trailers included. A new
// SVID or bundle retires the session: the next stream opens a new, re-verified one.
import { auditPath } from './access-log.js';
import { answer, writeAnswerH2 } from './answers.js';
import { cancelStream } from './cancel-stream.js';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import type { IdentitySource } from '../identity/source.js';
import { listen } from '../listener.js';
import type { Logger } from '../log.js';
import { forwardH2Response } from './h2-response.js';
import { h1FieldsToH2, h2RequestToH1 } from './http2-headers.js';
import { contentTypeOf, isGrpc } from './forwarding.js';
import { outboundFields, type OutboundRoute, routeCredential, verifiedRemote } from './outbound.js';
import { relay } from './relay.js';
import { startResponseTimer } from './response-timer.js';
import { connectVerified, RemoteIdentityError } from './verified-connect.js';
import { certificateAlertOf } from './connection-accounting.js';

export class H2OutboundProxy {
  private readonly server = http2.createServer();
  private session: http2.ClientHttp2Session | undefined;
  private connecting: Promise<http2.ClientHttp2Session> | undefined;
  /** Bumped when our identity or trust changes: a session opened before must not serve new streams. */
  private generation = 0;
  private readonly unsubscribe: () => void;

  private constructor(
    private readonly route: OutboundRoute,
    private readonly identity: IdentitySource | undefined,
    private readonly log: Logger,
  ) {
    this.server.on(
      'stream',
      (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) =>
        this.handle(stream, headers, raw).catch((err: unknown) => {
          log.error({ event: 'internal_error', err }, 'outbound stream failed');
          if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        }),
    );
    const offUpdate = identity?.onUpdate(() => this.retire());
    const offRevoke = identity?.onRevoked?.(() => this.retire());
    this.unsubscribe = () => {
      offUpdate?.();
      offRevoke?.();
    };
  }

  static async start(route: OutboundRoute, identity: IdentitySource | undefined, log: Logger) {
    const proxy = new H2OutboundProxy(route, identity, log);
    await listen(proxy.server, route.host, route.port, '--outbound');
    return proxy;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.session?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Our identity or trust changed: streams under way finish, new ones get a new session. */
  private retire(): void {
    this.generation++;
    this.session?.close();
    this.session = undefined;
    this.connecting = undefined;
  }

  /** The session to the remote, verified before the first byte of HTTP/2 is sent. */
  private remoteSession(): Promise<http2.ClientHttp2Session> {
    const current = this.session;
    if (current && !current.closed && !current.destroyed) return Promise.resolve(current);
    const { route } = this;
    const host = route.remote.hostname.replace(/^\[|\]$/g, '');
    const generation = this.generation;
    this.connecting ??= new Promise<http2.ClientHttp2Session>((resolve, reject) => {
      const socket = connectVerified(
        this.identity,
        verifiedRemote(route),
        { host, port: Number(route.remote.port || 443), ...(isIP(host) ? {} : { servername: host }) },
        ['h2'],
        this.log,
        (err) => {
          if (generation !== this.generation) {
            // Verified under the trust before a rotation: start again under the current one.
            socket.destroy();
            return resolve(this.remoteSession());
          }
          this.connecting = undefined;
          if (err) return reject(err);
          if (socket.alpnProtocol !== 'h2') {
            socket.destroy();
            return reject(new RemoteIdentityError('remote_not_h2', 'the remote did not agree to HTTP/2 (ALPN)'));
          }
          const session = http2.connect(route.remote.origin, { createConnection: () => socket });
          session.on('error', () => {});
          const forget = () => {
            if (this.session === session) this.session = undefined;
          };
          session.once('goaway', forget);
          session.once('close', forget);
          this.session = session;
          resolve(session);
        },
      );
    });
    return this.connecting;
  }

  private async handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, raw: string[]) {
    // A reset stream is an 'error' on it, never the process's.
    stream.on('error', () => {});
    const { route, log } = this;
    const reply = (status: number, reason: string): void => {
      writeAnswerH2(stream, answer(status, reason));
    };
    const credential = await routeCredential(route, this.identity, raw);
    if ('refused' in credential) {
      log.warn(
        {
          event: 'outbound_rejected',
          remote: route.remote.origin,
          expected: route.expectText,
          reason: credential.refused.reason,
          path: auditPath(String(headers[':path'] ?? '')),
        },
        'the stream was refused before it left: no credential to send it with',
      );
      writeAnswerH2(stream, credential.refused);
      return;
    }
    const { token } = credential;
    let session: http2.ClientHttp2Session;
    try {
      session = await this.remoteSession();
    } catch (err) {
      const reason =
        err instanceof RemoteIdentityError
          ? err.reason
          : certificateAlertOf(err) !== undefined
            ? 'remote_refused_our_certificate'
            : 'remote_unreachable';
      log.warn(
        { event: 'outbound_rejected', remote: route.remote.origin, expected: route.expectText, reason },
        (err as Error).message,
      );
      return reply(502, reason);
    }
    // The app's fields by the same rules as HTTP/1.1 routes, minus what we set: the remote's authority,
    // and for token routes the token (the app's own Authorization never goes on). gRPC's `te: trailers`
    // goes with the hop-by-hop fields: restated.
    const fields = outboundFields(h2RequestToH1(raw), token !== undefined);
    const { headers: out } = h1FieldsToH2(fields);
    if (isGrpc(contentTypeOf(fields))) out.te = 'trailers';
    if (token) out.authorization = `Bearer ${token}`;
    const up = session.request(
      {
        ...out,
        ':method': headers[':method'],
        ':path': headers[':path'],
        ':scheme': 'https',
        ':authority': route.remote.host,
      },
      { endStream: stream.endAfterHeaders },
    );
    const timer = startResponseTimer(up, route.limits.upstreamTimeoutMs, () => {
      cancelStream(up);
      reply(504, 'remote_timeout');
    });
    up.on('response', (responseHeaders) => {
      timer.clear();
      if (stream.destroyed) return;
      if (!forwardH2Response(up, stream, responseHeaders)) reply(502, 'bad_response');
    });
    up.on('error', () => {
      timer.clear();
      if (!stream.headersSent) reply(502, 'remote_unreachable');
      else stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
    if (!stream.endAfterHeaders) relay(stream, up);
    stream.once('close', () => {
      timer.clear();
      cancelStream(up);
    });
  }
}
