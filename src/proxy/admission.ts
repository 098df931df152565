// Admission: who is calling, and may they. From a connection (mTLS: its certificate, verified once) and a
// request head (the token or API key it carries, its method and path) to a returned value: Admitted, with
// the caller, the decision and the header names the app must not receive from the caller; or Refused, with
// the answer to write. It never writes to a socket and never calls back into the forwarder; it logs the
// authentication failures and counts the decisions. The decision it returns is logged by the access line
// (access-log.ts) once the exchange is over.
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ProxyMetrics } from './proxy-metrics.js';
import { type ApiKeyFormat, type ApiKeySet, DEFAULT_API_KEY_FORMAT, presentedApiKey } from '../authn/api-keys.js';
import { answerReasonOf, type PeerIdentity, type Rejection } from '../authn/identity.js';
import type { JwtAuthenticator } from '../authn/jwt.js';
import type { Authorizer, CertificateIdentity, Decision } from '../authz/policy.js';
import type { IdentitySource } from '../identity/source.js';
import type { Logger } from '../log.js';
import type { X509BundleSet } from '../spiffe/bundle.js';
import { type Answer, answer, denialAnswer } from './answers.js';
import { type HeaderPolicy, protectedNames } from './headers.js';
import { admitPeer } from './peer-gate.js';
import { rejectionLine, suppressedField } from './rejection-log.js';
import { checkRequestHead } from './request-checks.js';

/**
 * How callers authenticate. `certificates`: off (plain HTTP, or TLS that asks for none), optional (asked
 * for; a caller without one must send a token or key) or required. `authenticator`: bearer tokens are
 * accepted (JWT mode; mTLS mode with --jwt-audience); `Authorization` is then ours to judge.
 */
export interface InboundAuth {
  readonly certificates: 'off' | 'optional' | 'required';
  readonly authenticator?: JwtAuthenticator;
}

export interface AdmissionOptions {
  auth: InboundAuth;
  authorizer: Authorizer;
  /** `--policy-mode dry-run`: denials are logged and counted, and the request goes through. */
  dryRun?: boolean;
  /** `--api-keys-file`: the keys in force. */
  apiKeys?: () => ApiKeySet;
  /** With certificates: our identity (its revocation refuses every request). */
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
      /** The credential that was admitted: the request's token or key, or the connection's certificate. */
      readonly identity: PeerIdentity;
      /** The connection's certificate, when the request was admitted by its token or key over one. */
      readonly certificate?: CertificateIdentity;
      /** The decision in force (dry-run: a denial made an allow). */
      readonly decision: Decision & { allow: true };
      /** The decision as the rules made it, for the access line. */
      readonly judged: Decision;
      /** Header names (folded) the caller may not pass on to the app. */
      readonly owned: ReadonlySet<string>;
    }
  | {
      readonly admitted: false;
      /** What to answer; none: drop the connection (fail closed). */
      readonly answer?: Answer;
      /** An authenticated caller refused by the rules keeps its connection (if its request fully arrived). */
      readonly keepAlive?: boolean;
      /** Refused by the rules: the caller and the denial, for the access line. */
      readonly identity?: PeerIdentity;
      readonly judged?: Decision;
    };

/** A connection that was asked for a certificate: its verified peer, or none (tokens or keys accepted). */
interface PeerState {
  identity?: CertificateIdentity;
  /** With allow flags the decision depends on the caller alone: made once per connection. */
  decision?: Decision;
}

/** A compact JWS: three base64url parts. */
const COMPACT_JWS = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*$/i;
/** The longest claim we repeat in a log line: a SPIFFE ID's maximum. */
const MAX_LOGGED_CLAIM = 2048;

/**
 * What a rejected token said about itself, unverified: `iss` and `sub` when the payload is readable JSON
 * with string claims of reasonable length. Never the token, its signature or any other claim.
 */
export function presentedClaims(authorization: string | undefined): { iss?: string; sub?: string } {
  const parts = authorization === undefined ? null : COMPACT_JWS.exec(authorization);
  if (!parts) return {};
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[2], 'base64url').toString('utf8'));
  } catch {
    return {};
  }
  if (typeof payload !== 'object' || payload === null) return {};
  const claim = (value: unknown) => (typeof value === 'string' && value.length <= MAX_LOGGED_CLAIM ? value : undefined);
  const { iss, sub } = payload as Record<string, unknown>;
  return { iss: claim(iss), sub: claim(sub) };
}

/** Any `Authorization` field carries an API key: Node shows only the first one in `headers`. */
function carriesKeyInAuthorization(head: RequestHead, format: ApiKeyFormat): boolean {
  const raw = head.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    // Only a name of this length can match: most fields are passed over without lower-casing them.
    if (name.length === 13 && name.toLowerCase() === 'authorization' && format.bearer.test(raw[i + 1])) return true;
  }
  return false;
}

export class RequestAdmission {
  private readonly peers = new WeakMap<Socket, PeerState>();
  /** The names we own, with and without Authorization, for the claim mappings in force (`mappings`). */
  private names: {
    mappings: unknown;
    owned: ReadonlySet<string>;
    withAuthorization: ReadonlySet<string>;
  } = { mappings: null, owned: new Set(), withAuthorization: new Set() };

  constructor(private readonly options: AdmissionOptions) {
    this.ownedNames();
  }

  /** The names we own: computed again only when a policy reload changed the claim mappings. */
  private ownedNames(): typeof this.names {
    const { headers } = this.options;
    const mappings = headers.claimHeaders?.();
    if (mappings === this.names.mappings) return this.names;
    this.names = {
      mappings,
      owned: protectedNames(headers),
      withAuthorization: protectedNames({ ...headers, stripAuthorization: true }),
    };
    return this.names;
  }

  /**
   * Certificates, once per connection, before any request: a peer that fails is disconnected here, before a
   * byte reaches the app. Without a certificate, a caller is admitted only where tokens or API keys are
   * accepted: then every request on this connection must carry one.
   */
  connect(socket: TLSSocket, previousBundles: X509BundleSet | undefined): PeerIdentity | undefined {
    const { log, metrics, auth } = this.options;
    const identity = this.options.identity as IdentitySource;
    const gate = admitPeer(socket, identity, previousBundles, log, metrics, auth.certificates === 'optional');
    if (!gate.admitted) return undefined;
    this.peers.set(socket, { identity: gate.identity as CertificateIdentity | undefined });
    return gate.identity;
  }

  /**
   * The request's caller and decision, logged. The head is checked first (framing the app could read
   * otherwise). A certificate was verified once per connection; a bearer token is checked per request
   * (cached per token), and so is an API key. A request may carry one of them over a certificate: each
   * rule judges one credential (see evaluateRules), and a credential that fails is refused, never ignored.
   */
  admit(head: RequestHead): Admission | Promise<Admission> {
    const { auth, log, metrics, maxHeaderCount } = this.options;
    const malformed = checkRequestHead(head.rawHeaders, maxHeaderCount, head.url);
    if (malformed) {
      logRequestRefused(log, metrics, malformed.reason, malformed.status, head.socket.remoteAddress);
      return { admitted: false, answer: answer(malformed.status, malformed.reason) };
    }
    let certificate: CertificateIdentity | undefined;
    let state: PeerState | undefined;
    if (auth.certificates !== 'off') {
      state = this.peers.get(head.socket);
      // Unreachable unless a request raced authentication: fail closed.
      if (!state) return { admitted: false };
      // A revoked identity: nothing may pass in its name, not even on connections opened before.
      if (this.options.identity?.status().reason === 'identity_revoked')
        return { admitted: false, answer: answer(503, 'identity_revoked') };
      certificate = state.identity;
      // Verified once per connection, so checked here: no request passes on a certificate past its notAfter
      // (the listener also closes the connection then, see inbound.ts).
      if (certificate?.notAfter !== undefined && Date.now() > certificate.notAfter) {
        logRequestRefused(log, metrics, 'certificate_expired', 401, head.socket.remoteAddress);
        return { admitted: false, answer: answer(401, 'certificate_expired') };
      }
    }
    // An API key first (as before tokens existed on this listener): the key header (--api-key-header,
    // x-api-key by default), or `Authorization: Bearer <prefix>…`.
    const format = this.keyFormat();
    const key = this.options.apiKeys ? presentedApiKey(head.headers, format) : undefined;
    // A key in the key header and a token in Authorization: two credentials, neither checked for the other.
    // Refused, rather than one of them ignored.
    if (key !== undefined && key !== 'ambiguous' && key.from !== 'authorization' && auth.authenticator) {
      if (head.headers.authorization !== undefined) {
        const rejection = {
          reason: 'ERR_CREDENTIALS_AMBIGUOUS',
          message: `an API key (${format.header}) and a bearer token together`,
        };
        this.rejected(head, 'api-key', rejection);
        return { admitted: false, answer: answer(401, rejection.reason, { 'www-authenticate': 'Bearer' }) };
      }
    }
    if (key !== undefined) return this.admitKey(head, key, certificate);
    if (auth.authenticator && (head.headers.authorization !== undefined || !certificate)) {
      // A certificate-bound token (RFC 8705) is checked against this connection's certificate.
      const connection = certificate ? { certificateSha256Hex: certificate.leafSha256 } : undefined;
      return auth.authenticator.authenticate(head.headers.authorization, Date.now(), connection).then((result) => {
        if (result.ok) return this.decide(head, result.identity, certificate);
        this.rejected(head, 'jwt', result.rejection);
        if (result.status === 503) return { admitted: false, answer: answer(503, answerReasonOf(result.rejection)) };
        // RFC 6750 §3: no error code when the request carried no token at all.
        const challenge = result.rejection.reason === 'ERR_JWT_MISSING' ? 'Bearer' : 'Bearer error="invalid_token"';
        return { admitted: false, answer: answer(401, result.rejection.reason, { 'www-authenticate': challenge }) };
      });
    }
    if (!certificate) return this.admitKey(head, undefined, undefined);
    return this.decide(head, certificate, undefined, state);
  }

  /** Where callers send keys: `--api-key-header` and `--api-key-prefix`, as the header policy carries them. */
  private keyFormat(): ApiKeyFormat {
    return this.options.headers.apiKeyFormat ?? DEFAULT_API_KEY_FORMAT;
  }

  /** A caller with an API key (the key header or `Authorization: Bearer <prefix>...`): one key, known, unexpired. */
  private admitKey(
    head: RequestHead,
    presented: ReturnType<typeof presentedApiKey>,
    certificate: CertificateIdentity | undefined,
  ): Admission | Promise<Admission> {
    const result =
      presented === undefined
        ? ({
            ok: false,
            rejection: { reason: 'ERR_API_KEY_MISSING', message: 'no client certificate and no API key' },
          } as const)
        : presented === 'ambiguous'
          ? ({ ok: false, rejection: { reason: 'ERR_API_KEY_UNKNOWN', message: 'more than one API key' } } as const)
          : (this.options.apiKeys as () => ApiKeySet)().authenticate(presented.key, Date.now());
    if (result.ok) return this.decide(head, result.identity, certificate);
    this.rejected(head, 'api-key', result.rejection);
    return { admitted: false, answer: answer(401, result.rejection.reason, { 'www-authenticate': 'Bearer' }) };
  }

  /** A token or key refused: logged (within the budget of rejection lines) with what the token claimed. */
  private rejected(head: RequestHead, auth: 'jwt' | 'api-key', rejection: Rejection): void {
    const { log, metrics } = this.options;
    const dropped = rejectionLine(log, 'peer_rejected', metrics, undefined, head.socket.remoteAddress);
    if (dropped < 0) return;
    const presented = auth === 'jwt' ? presentedClaims(head.headers.authorization) : {};
    log.warn(
      {
        event: 'peer_rejected',
        auth,
        reason: rejection.reason,
        remote: head.socket.remoteAddress,
        presented_iss: presented.iss,
        presented_sub: presented.sub,
        suppressed: suppressedField(dropped),
      },
      rejection.message,
    );
  }

  /**
   * Decides (once per connection when the decision depends on the certificate alone), counts and audit-logs.
   * `identity` is the request's credential (or the certificate, when the request carries none);
   * `certificate` the connection's, when the request carries a token or key over one.
   * In dry-run mode a denial is logged and counted as such, and the request is let through.
   */
  private decide(
    head: RequestHead,
    identity: PeerIdentity,
    certificate: CertificateIdentity | undefined,
    connection?: PeerState,
  ): Admission | Promise<Admission> {
    const { authorizer } = this.options;
    const known = connection?.decision;
    if (known) return this.judged(head, identity, certificate, known);
    const decision = authorizer.decide(identity, head.method ?? '', head.url ?? '', certificate);
    // Only a shared rate-limit store makes a decision wait (per request, so never cached per connection).
    if (decision instanceof Promise) return decision.then((d) => this.judged(head, identity, certificate, d));
    if (connection && !authorizer.perRequest) connection.decision = decision;
    return this.judged(head, identity, certificate, decision);
  }

  /** Counts a decision, and makes it an admission (dry-run: a denial goes through). */
  private judged(
    head: RequestHead,
    presented: PeerIdentity,
    certificate: CertificateIdentity | undefined,
    made: Decision,
  ): Admission {
    const { dryRun, metrics } = this.options;
    let decision = made;
    // The rule may have admitted the connection's certificate rather than the request's credential.
    const identity = made.allow && made.admitted ? made.admitted : presented;
    const over = identity === certificate ? undefined : certificate;
    // Dry-run lifts the rules' denials only: a key's own route limits and unparseable paths still hold.
    const wouldDeny =
      !decision.allow &&
      dryRun === true &&
      decision.reason !== 'key_route_denied' &&
      decision.reason !== 'path_not_normalized';
    metrics.decision(
      decision.allow ? 'allow' : wouldDeny ? 'dry_run_deny' : 'deny',
      decision.allow ? 'rule_matched' : decision.reason,
      identity.method,
    );
    if (!decision.allow) {
      if (!wouldDeny)
        return { admitted: false, answer: denialAnswer(decision), keepAlive: true, identity, judged: made };
      decision = { allow: true, rule: `dry-run (${decision.rule ?? decision.reason})` };
    }
    return {
      admitted: true,
      identity,
      ...(over ? { certificate: over } : {}),
      decision,
      judged: made,
      owned: this.ownedFor(head, identity),
    };
  }

  /**
   * Header names the caller may not pass on: ours; `Authorization` too when it carried an API key (whoever
   * sent it, even a caller with a certificate), and, where tokens are accepted, for a caller admitted by its
   * certificate: `--jwt-forward-token` forwards the token this request was admitted by, and nothing else.
   */
  private ownedFor(head: RequestHead, identity: PeerIdentity): ReadonlySet<string> {
    const keyInAuthorization = this.options.apiKeys !== undefined && carriesKeyInAuthorization(head, this.keyFormat());
    // Where tokens are accepted, an Authorization this request was not admitted by is never forwarded: not
    // when a key admitted it, nor when a rule admitted the connection's certificate rather than its token.
    const notItsToken =
      this.options.auth.authenticator !== undefined && (identity.method === 'api-key' || identity.method === 'mtls');
    const names = this.ownedNames();
    return keyInAuthorization || notItsToken ? names.withAuthorization : names.owned;
  }
}

/** A request head refused before authentication (400, 431, 501): within the budget of rejection lines. */
export function logRequestRefused(
  log: Logger,
  metrics: ProxyMetrics,
  reason: string,
  status: number,
  remote: string | undefined,
): void {
  const dropped = rejectionLine(log, 'request_refused', metrics, undefined, remote);
  if (dropped < 0) return;
  log.warn(
    { event: 'request_refused', reason, status, remote, suppressed: suppressedField(dropped) },
    'request refused before authentication',
  );
}
