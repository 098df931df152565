// Outbound (egress) routes: the app sends plain HTTP to a loopback port; the sidecar calls the remote
// with the workload's identity: mTLS with our current SVID (the remote's chain verified against the
// bundle of its trust domain and its SPIFFE ID against the route's rule, no DNS name check), plus, on a
// token route, a bearer token: a JWT-SVID, an OAuth access token, or the caller's verified token. A socket
// reaches the request only after the remote is verified, so not one byte goes to an unverified peer, and no
// request leaves without its token. Mismatch: 502 and an audit line; no identity or token: 503 (401/403
// when the caller's token is missing, unverified or refused in exchange).
import { type Answer, answer, writeAnswerH1 } from './answers.js';
import { auditPath } from './access-log.js';
import type * as http from 'node:http';
import { nodeHttp } from '../node-http.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { relay } from './relay.js';
import { startResponseTimer } from './response-timer.js';
import type { ConnectionOptions } from 'node:tls';
import type { IdentitySource } from '../identity/source.js';
import { closeNow, listen } from '../listener.js';
import type { Logger } from '../log.js';
import type { IdMatcher } from '../spiffe/match.js';
import { downstreamResponseHeaders, forwardableHeaders } from './headers.js';
import { connectVerified, RemoteIdentityError, type VerifiedRemote } from './verified-connect.js';
import { certificateAlertOf } from './connection-accounting.js';

export interface OutboundRoute {
  /** Where the app connects (loopback). */
  host: string;
  port: number;
  /** The remote sidecar. */
  remote: URL;
  /** Who the remote must be (allow-rule syntax); required for https remotes. */
  expect: IdMatcher | undefined;
  expectText: string | undefined;
  /**
   * mtls: present our SVID. jwt: attach a bearer token (no client certificate). client-credentials,
   * token-exchange, forward: an OAuth access token, over mTLS with our SVID to an https remote.
   */
  auth: 'mtls' | 'jwt' | 'client-credentials' | 'token-exchange' | 'forward';
  /** jwt: the bearer token to attach, or undefined while none is available. */
  token?: () => Promise<string | undefined>;
  /**
   * client-credentials (`subject` undefined): our own access token; token-exchange: the one `subject` (the
   * caller's token) was exchanged for. Or why there is none.
   */
  accessToken?: (
    subject: string | undefined,
  ) => Promise<{ token: string } | { refused: 'token_unavailable' | 'token_exchange_refused' }>;
  /** forward: whether this sidecar verified the caller's `Authorization` field; required for forward routes. */
  verifyToken?: (authorization: string) => Promise<boolean>;
  limits: { handshakeTimeoutMs: number; upstreamTimeoutMs: number; maxConnections: number };
}

/** Names the sidecar sets itself on the way out (compared folded, like inbound), for HTTP/1.1 and h2 routes. */
const OWNED_OUTBOUND = new Set(['host']);
const OWNED_OUTBOUND_JWT = new Set(['host', 'authorization']);

/** The app's fields, as they may travel to the remote: the shared rules, minus what this route sets. */
export function outboundFields(rawHeaders: readonly string[], withToken: boolean): string[] {
  return forwardableHeaders(rawHeaders, withToken ? OWNED_OUTBOUND_JWT : OWNED_OUTBOUND);
}
/** A compact JWS: what a bearer token must look like before it goes into a header. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** RFC 6750 §2.1, as the inbound side parses it: `Bearer` (any case), one space, a b64token. */
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * The bearer token a JWT route sends now, or undefined when there is none fit to send: only a compact
 * JWS goes into a header (a token file with a line break must not inject headers).
 */
export async function routeToken(route: OutboundRoute): Promise<string | undefined> {
  const token = await route.token?.();
  return token && COMPACT_JWS.test(token) ? token : undefined;
}

/** What the remote is checked for: every route but a JWT one presents our SVID. */
export function verifiedRemote(route: OutboundRoute): VerifiedRemote {
  return {
    auth: route.auth === 'jwt' ? 'jwt' : 'mtls',
    expect: route.expect,
    expectText: route.expectText,
    limits: route.limits,
  };
}

const BEARER_CHALLENGE = { 'www-authenticate': 'Bearer' };

/**
 * The caller's token among the app's fields (`raw`: name, value, ...): missing when no field offers a Bearer
 * token, invalid when it is not exactly one `Bearer <b64token>`.
 */
function subjectToken(raw: readonly string[]): { token: string; field: string } | { refused: Answer } {
  const fields: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === 'authorization') fields.push(raw[i + 1]);
  if (fields.length === 0 || (fields.length === 1 && !/^bearer(\s|$)/i.test(fields[0])))
    return { refused: answer(401, 'subject_token_missing', BEARER_CHALLENGE) };
  const token = fields.length === 1 ? BEARER.exec(fields[0])?.[1] : undefined;
  if (token === undefined) return { refused: answer(401, 'subject_token_invalid', BEARER_CHALLENGE) };
  return { token, field: fields[0] };
}

function accessTokenAnswer(
  result: Awaited<ReturnType<NonNullable<OutboundRoute['accessToken']>>>,
): { token: string } | { refused: Answer } {
  if ('token' in result) return result;
  return { refused: answer(result.refused === 'token_exchange_refused' ? 403 : 503, result.refused) };
}

/**
 * What a request on this route is sent with, checked before the remote is dialled (HTTP/1.1 and h2 routes
 * alike): our identity when we present it, and the route's token. `raw`: the app's fields (name, value, ...),
 * where the caller's token is for token-exchange and forward routes. No token, no request: the app gets
 * 503 (no identity, no token, token endpoint failing), 401 (the caller's token missing or unverified) or 403
 * (the exchange refused).
 */
export async function routeCredential(
  route: OutboundRoute,
  identity: IdentitySource | undefined,
  raw: readonly string[] = [],
): Promise<{ token?: string } | { refused: Answer }> {
  if (route.auth !== 'jwt' && route.remote.protocol === 'https:' && identity?.status().ready === false)
    return { refused: answer(503, 'no_identity') };
  switch (route.auth) {
    case 'mtls':
      return {};
    case 'jwt': {
      const token = await routeToken(route);
      return token ? { token } : { refused: answer(503, 'no_token') };
    }
    case 'client-credentials':
      return route.accessToken ? accessTokenAnswer(await route.accessToken(undefined)) : noToken();
    case 'token-exchange': {
      const subject = subjectToken(raw);
      if ('refused' in subject) return subject;
      return route.accessToken ? accessTokenAnswer(await route.accessToken(subject.token)) : noToken();
    }
    case 'forward': {
      const subject = subjectToken(raw);
      if ('refused' in subject) return subject;
      // A check that fails to run is a token not verified.
      const verified = (await route.verifyToken?.(subject.field).catch(() => false)) === true;
      return verified ? { token: subject.token } : { refused: answer(401, 'subject_token_invalid', BEARER_CHALLENGE) };
    }
  }
}

function noToken(): { refused: Answer } {
  return { refused: answer(503, 'token_unavailable') };
}

/** An https.Agent whose sockets are handed out only once the remote proved the expected identity. */
class VerifyingAgent extends https.Agent {
  /** Bumped when our SVID or the bundles change: older connections are retired as they go free. */
  private generation = 0;
  private readonly born = new WeakMap<Duplex, number>();

  constructor(
    private readonly identity: IdentitySource | undefined,
    private readonly route: VerifiedRemote,
    private readonly log: Logger,
  ) {
    super({ keepAlive: true, scheduling: 'lifo' });
    // A pooled connection was verified (and presented our SVID) under the old identity and bundles.
    this.on('free', (socket: Duplex) => {
      if (this.born.get(socket) !== this.generation) socket.destroy();
    });
  }

  /** New identity material: idle connections go now, busy ones when their request ends. */
  retire(): void {
    this.generation++;
    for (const sockets of Object.values(this.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
  }

  // Node's Agent supports an asynchronous createConnection: return nothing, call back with the socket.
  override createConnection(
    options: https.RequestOptions,
    done?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    const socket = connectVerified(
      this.identity,
      this.route,
      options as ConnectionOptions,
      ['http/1.1'],
      this.log,
      (err) => done?.(err, socket),
    );
    this.born.set(socket, this.generation);
    return undefined;
  }
}

/**
 * The path a log line names: never an absolute-form target's userinfo or host (`http://user:pass@host/x`), never
 * the query, at most as long as the audit line's (auditPath).
 */
function loggedPath(url: string | undefined): string {
  if (url === undefined || url.startsWith('/')) return auditPath(url);
  try {
    return auditPath(new URL(url).pathname);
  } catch {
    return '';
  }
}

/** One of our answers to the app: from the catalogue; the app's connection stays (it is on loopback). */
function reply(res: ServerResponse, status: number, reason: string): void {
  writeAnswerH1(res, answer(status, reason), true);
}

export class OutboundProxy {
  private readonly server: http.Server;
  private readonly agent: http.Agent | https.Agent;

  private constructor(
    private readonly route: OutboundRoute,
    private readonly identity: IdentitySource | undefined,
    private readonly log: Logger,
  ) {
    this.agent =
      route.remote.protocol === 'https:'
        ? new VerifyingAgent(identity, verifiedRemote(route), log)
        : new nodeHttp.Agent({ keepAlive: true, scheduling: 'lifo' });
    this.server = nodeHttp.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        log.error({ event: 'internal_error', err }, 'outbound request failed');
        if (!res.headersSent) reply(res, 500, 'internal_error');
        else res.destroy();
      });
    });
    this.server.maxConnections = route.limits.maxConnections;
    const agent = this.agent;
    if (agent instanceof VerifyingAgent) {
      const offUpdate = identity?.onUpdate(() => agent.retire());
      const offRevoke = identity?.onRevoked?.(() => agent.retire());
      this.unsubscribe = () => {
        offUpdate?.();
        offRevoke?.();
      };
    }
  }

  private unsubscribe: () => void = () => {};

  static async start(route: OutboundRoute, identity: IdentitySource | undefined, log: Logger): Promise<OutboundProxy> {
    const proxy = new OutboundProxy(route, identity, log);
    await listen(proxy.server, route.host, route.port, '--outbound');
    return proxy;
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.unsubscribe();
    await closeNow(this.server);
    this.agent.destroy();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { route, log } = this;
    const credential = await routeCredential(route, this.identity, req.rawHeaders);
    if ('refused' in credential) {
      log.warn(
        {
          event: 'outbound_rejected',
          remote: route.remote.origin,
          expected: route.expectText,
          reason: credential.refused.reason,
          path: loggedPath(req.url),
        },
        'the request was refused before it left: no credential to send it with',
      );
      writeAnswerH1(res, credential.refused, true);
      return;
    }
    const { token } = credential;
    // An absolute-form target (GET http://elsewhere/x) is reduced to its path: the remote is fixed.
    let path = req.url ?? '/';
    if (!path.startsWith('/')) {
      try {
        const target = new URL(path);
        path = `${target.pathname}${target.search}`;
      } catch {
        return reply(res, 400, 'bad_target');
      }
    }
    const headers = outboundFields(req.rawHeaders, token !== undefined);
    headers.push('host', route.remote.host);
    if (token) headers.push('authorization', `Bearer ${token}`);
    const upstream = (route.remote.protocol === 'https:' ? https : nodeHttp).request({
      host: route.remote.hostname,
      port: route.remote.port || (route.remote.protocol === 'https:' ? 443 : 80),
      method: req.method,
      path,
      headers,
      setHost: false,
      agent: this.agent,
    });
    let timedOut = false;
    const timer = startResponseTimer(upstream, route.limits.upstreamTimeoutMs, () => {
      timedOut = true;
      upstream.destroy(new Error(`the remote sent no response headers within ${route.limits.upstreamTimeoutMs} ms`));
    });
    upstream.on('response', (remoteRes) => {
      timer.clear();
      try {
        // Never the remote's reason phrase: Node's parser accepts bytes that writeHead refuses (a crash).
        res.writeHead(remoteRes.statusCode ?? 502, downstreamResponseHeaders(remoteRes.rawHeaders));
      } catch {
        upstream.destroy(new RemoteIdentityError('bad_response', 'the remote sent a response that cannot be relayed'));
        return;
      }
      relay(remoteRes, res);
    });
    upstream.on('upgrade', (_res, socket) => {
      socket.destroy();
      upstream.destroy(new RemoteIdentityError('bad_response', 'the remote switched protocols unasked'));
    });
    res.on('close', () => {
      timer.clear();
      if (!res.writableFinished) upstream.destroy();
    });
    upstream.on('error', (err) => {
      timer.clear();
      const reason = timedOut
        ? 'remote_timeout'
        : err instanceof RemoteIdentityError
          ? err.reason
          : certificateAlertOf(err) !== undefined
            ? 'remote_refused_our_certificate'
            : 'remote_unreachable';
      log.warn(
        {
          event: 'outbound_rejected',
          remote: route.remote.origin,
          expected: route.expectText,
          reason,
          path: loggedPath(req.url),
        },
        err.message,
      );
      if (!res.headersSent) reply(res, timedOut ? 504 : 502, reason);
      else res.destroy();
    });
    relay(req, upstream);
  }
}
