// Admission: who is calling, and may they. From a connection (mTLS: its certificate, verified once) and a
// request head (the token or API key it carries, its method and path) to a returned value: Admitted, with
// the caller, the decision and the header names the app must not receive from the caller; or Refused, with
// the answer to write. It never writes to a socket and never calls back into the forwarder; it logs the
// authentication failures and the audit line, and counts the decisions.
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ProxyMetrics } from './proxy-metrics.js';
import { type ApiKeySet, presentedApiKey } from '../authn/api-keys.js';
import { describePeer, type PeerIdentity, type Rejection } from '../authn/identity.js';
import type { JwtAuthenticator } from '../authn/jwt.js';
import type { Authorizer, Decision } from '../authz/policy.js';
import type { IdentitySource } from '../identity/source.js';
import type { Logger } from '../log.js';
import type { X509BundleSet } from '../spiffe/bundle.js';
import { type Answer, answer, denialAnswer } from './answers.js';
import { type HeaderPolicy, protectedNames } from './headers.js';
import { admitPeer } from './peer-gate.js';
import { checkRequestHead } from './request-checks.js';

export interface AdmissionOptions {
  auth: { mode: 'mtls' } | { mode: 'jwt'; authenticator: JwtAuthenticator };
  authorizer: Authorizer;
  /** `--policy-mode dry-run`: denials are logged and counted, and the request goes through. */
  dryRun?: boolean;
  /** `--api-keys-file`: the keys in force. In mTLS mode a caller without a certificate must send one. */
  apiKeys?: () => ApiKeySet;
  /** mTLS: our identity (its revocation refuses every request). */
  identity?: IdentitySource;
  /** The names the app receives from us only (identity headers, XFCC, forwarding headers). */
  headers: HeaderPolicy;
  maxHeaderCount: number;
  log: Logger;
  metrics: ProxyMetrics;
}

/** What admission reads of a request, HTTP/1.1 or HTTP/2 (whose socket is the session's TLS socket). */
export interface RequestHead {
  readonly socket: Socket;
  readonly method?: string;
  readonly url?: string;
  readonly headers: IncomingHttpHeaders;
  /** The fields as a flat [name, value, …] list, HTTP/1.1 style (HTTP/2: without pseudo-headers). */
  readonly rawHeaders: readonly string[];
}

export type Admission =
  | {
      readonly admitted: true;
      readonly identity: PeerIdentity;
      readonly decision: Decision & { allow: true };
      /** Header names (folded) the caller may not pass on to the app. */
      readonly owned: ReadonlySet<string>;
    }
  | {
      readonly admitted: false;
      /** What to answer; none: drop the connection (fail closed). */
      readonly answer?: Answer;
      /** An authenticated caller refused by the rules keeps its connection (if its request fully arrived). */
      readonly keepAlive?: boolean;
    };

/** An mTLS connection: its verified peer, or none (no certificate, API keys accepted). */
interface PeerState {
  identity?: PeerIdentity;
  /** With allow flags the decision depends on the caller alone: made once per connection. */
  decision?: Decision;
}

const MAX_LOGGED_PATH = 256;
const API_KEY_BEARER = /^Bearer sk_/i;

/** Path for the audit log: no query string (it may carry secrets), bounded length. */
function auditPath(url: string | undefined): string {
  const path = (url ?? '').split('?', 1)[0];
  return path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}...` : path;
}

/** Any `Authorization` field carries an API key: Node shows only the first one in `headers`. */
function carriesKeyInAuthorization(head: RequestHead): boolean {
  const raw = head.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    // Only a name of this length can match: most fields are passed over without lower-casing them.
    if (name.length === 13 && name.toLowerCase() === 'authorization' && API_KEY_BEARER.test(raw[i + 1])) return true;
  }
  return false;
}

export class RequestAdmission {
  private readonly peers = new WeakMap<Socket, PeerState>();
  private readonly owned: ReadonlySet<string>;
  private readonly ownedWithAuthorization: ReadonlySet<string>;

  constructor(private readonly options: AdmissionOptions) {
    this.owned = protectedNames(options.headers);
    this.ownedWithAuthorization = protectedNames({ ...options.headers, stripAuthorization: true });
  }

  /**
   * mTLS, once per connection, before any request: a peer that fails is disconnected here, before a byte
   * reaches the app. Without a certificate, a caller is admitted only where API keys are accepted: then
   * every request on this connection must carry one.
   */
  connect(socket: TLSSocket, previousBundles: X509BundleSet | undefined): void {
    const { log, metrics, apiKeys } = this.options;
    const identity = this.options.identity as IdentitySource;
    const gate = admitPeer(socket, identity, previousBundles, log, metrics, apiKeys !== undefined);
    if (gate.admitted) this.peers.set(socket, { identity: gate.identity });
  }

  /**
   * The request's caller and decision, logged. The head is checked first (framing the app could read
   * otherwise). mTLS: the peer was verified once per connection. JWT: the bearer token is checked per
   * request (cached per token). An API key, where accepted, is checked per request.
   */
  admit(head: RequestHead): Admission | Promise<Admission> {
    const { auth, log, maxHeaderCount } = this.options;
    const malformed = checkRequestHead(head.rawHeaders, maxHeaderCount);
    if (malformed) {
      log.warn(
        {
          event: 'request_refused',
          reason: malformed.reason,
          status: malformed.status,
          remote: head.socket.remoteAddress,
        },
        'request refused before authentication',
      );
      return { admitted: false, answer: answer(malformed.status, malformed.reason) };
    }
    if (auth.mode === 'jwt') {
      const presented = this.options.apiKeys ? presentedApiKey(head.headers) : undefined;
      if (presented !== undefined) return this.admitKey(head, presented);
      return auth.authenticator.authenticate(head.headers.authorization).then((result) => {
        if (result.ok) return this.decide(head, result.identity);
        this.rejected(head, 'jwt', result.rejection);
        if (result.status === 503) return { admitted: false, answer: answer(503, 'no_keys') };
        // RFC 6750 §3: no error code when the request carried no token at all.
        const challenge = result.rejection.reason === 'ERR_JWT_MISSING' ? 'Bearer' : 'Bearer error="invalid_token"';
        return { admitted: false, answer: answer(401, result.rejection.reason, { 'www-authenticate': challenge }) };
      });
    }
    const state = this.peers.get(head.socket);
    // Unreachable unless a request raced authentication: fail closed.
    if (!state) return { admitted: false };
    // A revoked identity: nothing may pass in its name, not even on connections opened before.
    if (this.options.identity?.status().reason === 'identity_revoked')
      return { admitted: false, answer: answer(503, 'identity_revoked') };
    if (!state.identity) return this.admitKey(head, presentedApiKey(head.headers));
    return this.decide(head, state.identity, state);
  }

  /** A caller with an API key (`x-api-key` or `Authorization: Bearer sk_...`): one key, known, unexpired. */
  private admitKey(head: RequestHead, presented: ReturnType<typeof presentedApiKey>): Admission | Promise<Admission> {
    const result =
      presented === undefined
        ? ({
            ok: false,
            rejection: { reason: 'ERR_API_KEY_MISSING', message: 'no client certificate and no API key' },
          } as const)
        : presented === 'ambiguous'
          ? ({ ok: false, rejection: { reason: 'ERR_API_KEY_UNKNOWN', message: 'more than one API key' } } as const)
          : (this.options.apiKeys as () => ApiKeySet)().authenticate(presented.key, Date.now());
    if (result.ok) return this.decide(head, result.identity);
    this.rejected(head, 'api_key', result.rejection);
    return { admitted: false, answer: answer(401, result.rejection.reason, { 'www-authenticate': 'Bearer' }) };
  }

  private rejected(head: RequestHead, auth: 'jwt' | 'api_key', rejection: Rejection): void {
    this.options.log.warn(
      { event: 'peer_rejected', auth, reason: rejection.reason, remote: head.socket.remoteAddress },
      rejection.message,
    );
  }

  /**
   * Decides (once per connection when the decision depends on the caller alone), counts and audit-logs.
   * In dry-run mode a denial is logged and counted as such, and the request is let through.
   */
  private decide(head: RequestHead, identity: PeerIdentity, connection?: PeerState): Admission | Promise<Admission> {
    const { authorizer } = this.options;
    const known = connection?.decision;
    if (known) return this.judged(head, identity, known);
    const decision = authorizer.decide(identity, head.method ?? '', head.url ?? '');
    // Only a shared rate-limit store makes a decision wait (per request, so never cached per connection).
    if (decision instanceof Promise) return decision.then((d) => this.judged(head, identity, d));
    if (connection && !authorizer.perRequest) connection.decision = decision;
    return this.judged(head, identity, decision);
  }

  /** Counts and audit-logs a decision, and makes it an admission (dry-run: a denial goes through). */
  private judged(head: RequestHead, identity: PeerIdentity, made: Decision): Admission {
    const { dryRun, metrics, log } = this.options;
    let decision = made;
    // Dry-run lifts the rules' denials only: a key's own route limits and unparseable paths still hold.
    const wouldDeny =
      !decision.allow &&
      dryRun === true &&
      decision.reason !== 'key_route_denied' &&
      decision.reason !== 'path_not_normalized';
    metrics.decision(
      decision.allow ? 'allow' : wouldDeny ? 'dry_run_deny' : 'deny',
      decision.allow ? 'rule_matched' : decision.reason,
    );
    log.info(
      {
        event: 'authz',
        peer: describePeer(identity),
        auth: identity.method,
        method: head.method,
        path: auditPath(head.url),
        decision: decision.allow ? 'allow' : 'deny',
        ...(wouldDeny ? { dry_run: true } : {}),
        ...(decision.rule !== undefined ? { rule: decision.rule } : {}),
        ...(decision.allow ? {} : { reason: decision.reason }),
      },
      'authorization decision',
    );
    if (!decision.allow) {
      if (!wouldDeny) return { admitted: false, answer: denialAnswer(decision), keepAlive: true };
      decision = { allow: true, rule: `dry-run (${decision.rule ?? decision.reason})` };
    }
    return { admitted: true, identity, decision, owned: this.ownedFor(head, identity) };
  }

  /**
   * Header names the caller may not pass on: ours; `Authorization` too when it carried an API key (whoever
   * sent it, even a caller with a certificate), and in JWT mode for a caller admitted by its API key:
   * `--jwt-forward-token` forwards the token this request was admitted by, and nothing else.
   */
  private ownedFor(head: RequestHead, identity: PeerIdentity): ReadonlySet<string> {
    const keyInAuthorization = this.options.apiKeys !== undefined && carriesKeyInAuthorization(head);
    const admittedByKeyInJwtMode = this.options.auth.mode === 'jwt' && identity.method === 'api_key';
    return keyInAuthorization || admittedByKeyInJwtMode ? this.ownedWithAuthorization : this.owned;
  }
}
