// Evaluates policy rules for one request: in order, first match wins, default deny. A rule matches on the
// method, the path (normal form), the caller and its `where` conditions on the segments the path template
// bound; its effect allows or denies, and an allow may be rate limited per caller. Denials carry a bounded
// reason (audit log, metric label) and the rule behind them.
import { describePeer, type PeerIdentity } from '../authn/identity.js';
import type { IdMatcher } from '../spiffe/match.js';
import { type ClaimCondition, conditionHolds } from './claim-condition.js';
import type { PathMatcher, PathPattern } from '../path-match.js';
import type { Binding, PathTemplate } from './path-template.js';
import { type ResourceCondition, resourceConditionsHold } from './resource-condition.js';
import type { Admission, RuleLimiter } from './rate-limiter.js';

export type DenyReason =
  | 'no_matching_rule'
  | 'rule_denied'
  | 'claim_mismatch'
  | 'resource_mismatch'
  | 'rate_limited'
  | 'rate_limit_unavailable'
  | 'key_route_denied'
  | 'path_not_normalized';

export type Decision =
  | {
      allow: true;
      rule: string;
      /**
       * The credential the rule admitted, when it is not the caller judged first: a request whose token no rule
       * admits, over a connection whose certificate one does (see evaluateRules).
       */
      admitted?: PeerIdentity;
    }
  | { allow: false; reason: DenyReason; rule?: string; retryAfterSeconds?: number };

/** An mTLS caller: the certificate of the connection a request came on. */
export type CertificateIdentity = PeerIdentity & { method: 'mtls' };

/** What a rule looks at: the method and the path in normal form (see path-match.ts). */
export interface RequestFacts {
  method: string;
  path: string;
}

export interface CallerConditions {
  /** The caller's SPIFFE ID matches one of these allow rules. */
  ids?: IdMatcher;
  /** The token was issued by one of these issuers (`--jwt-issuer` names). */
  issuers?: ReadonlySet<string>;
  /** The caller authenticated with an API key of one of these names. */
  apiKeys?: ReadonlySet<string>;
  /** How the caller authenticated. */
  auth?: ReadonlySet<PeerIdentity['method']>;
  /** Every condition holds on the token's claims. */
  claims?: readonly ClaimCondition[];
  /**
   * The connection's client certificate matches one of these (the rule then judges the request's token or key
   * with its other conditions).
   */
  certificate?: IdMatcher;
}

/** A rule's `path:` as written. */
export type RulePathPattern = PathPattern | { template: string };

export interface CompiledRule {
  name: string;
  effect: 'allow' | 'deny';
  methods?: ReadonlySet<string>;
  /** Whether the rule covers a path; for a template, whether it binds it. */
  path?: PathMatcher;
  /** The path as written, for what `policy check` says about the rule (never used to decide). */
  pathPattern?: RulePathPattern;
  /** `path: { template }`: the segments it binds, for `where`. */
  template?: PathTemplate;
  callers?: CallerConditions;
  /** Every condition holds on the template's bindings and the credential the rule judges. */
  where?: readonly ResourceCondition[];
  limiter?: RuleLimiter;
}

/**
 * Whether a rule's `methods` cover a request method. A rule for `GET` covers `HEAD` too: servers answer
 * HEAD with the GET handler (RFC 9110 §9.3.2), so a deny of GET that HEAD escaped would still run it.
 */
export function methodCovered(methods: ReadonlySet<string> | undefined, method: string): boolean {
  return methods === undefined || methods.has(method) || (method === 'HEAD' && methods.has('GET'));
}

type CallerMatch = 'match' | 'no_match' | 'claims_failed';

function matchCaller(
  conditions: CallerConditions | undefined,
  caller: PeerIdentity,
  certificate: CertificateIdentity | undefined,
): CallerMatch {
  if (!conditions) return 'match';
  const { ids, issuers, apiKeys, auth, claims } = conditions;
  // "This certificate, and a token (or key) that…": the certificate is the connection's, the other
  // conditions judge the request's own credential, never the certificate itself.
  if (conditions.certificate) {
    if (caller.method === 'mtls' || !certificate || conditions.certificate(certificate.id) === undefined)
      return 'no_match';
  }
  if (auth && !auth.has(caller.method)) return 'no_match';
  if (ids && (caller.id === undefined || ids(caller.id) === undefined)) return 'no_match';
  const issuer = caller.method !== 'mtls' && caller.method !== 'api-key' ? caller.issuer : undefined;
  if (issuers && (issuer === undefined || !issuers.has(issuer))) return 'no_match';
  if (apiKeys && (caller.method !== 'api-key' || !apiKeys.has(caller.name))) return 'no_match';
  if (claims) {
    const set = caller.method !== 'mtls' && caller.method !== 'api-key' ? caller.claims : undefined;
    if (!set) return 'no_match';
    if (!claims.every((c) => conditionHolds(c, set))) return 'claims_failed';
  }
  return 'match';
}

/** The decision of a rate-limited rule that matched, from its limiter's answer. */
function limited(rule: CompiledRule, admission: Admission, by: PeerIdentity | undefined): Decision {
  if (admission.ok) return by ? { allow: true, rule: rule.name, admitted: by } : { allow: true, rule: rule.name };
  return {
    allow: false,
    reason: admission.unavailable ? 'rate_limit_unavailable' : 'rate_limited',
    rule: rule.name,
    retryAfterSeconds: Math.max(1, Math.ceil(admission.retryAfterMs / 1000)),
  };
}

/**
 * The decision, at once; a promise only when the matching rule counts in a shared store (one round trip:
 * see shared-rate-limits.ts). Local buckets and rules without limits never make a request wait.
 *
 * `certificate`: the connection's verified certificate, when the request also carries a token or key
 * (`caller`). Each rule, in order, judges one credential: the request's, then the certificate's; the first
 * rule that matches either decides (a deny rule that matches either denies). A rule never adds up what two
 * credentials prove, except the one conjunction it spells out (`callers.certificate`), so no mix of
 * credentials is admitted that no single rule admits.
 */
export function evaluateRules(
  rules: readonly CompiledRule[],
  caller: PeerIdentity,
  request: RequestFacts,
  now: number,
  certificate?: CertificateIdentity,
): Decision | Promise<Decision> {
  let claimsFailed = false;
  let resourceFailed = false;
  for (const rule of rules) {
    if (!methodCovered(rule.methods, request.method)) continue;
    let bindings: readonly Binding[] = [];
    if (rule.template) {
      const bound = rule.template.bind(request.path);
      if (!bound) continue;
      bindings = bound;
    } else if (rule.path && !rule.path(request.path)) continue;
    let admitted: PeerIdentity | undefined;
    for (const credential of certificate ? [caller, certificate] : [caller]) {
      const match = matchCaller(rule.callers, credential, certificate);
      // Only an allow rule that failed on a claim makes the denial a `claim_mismatch`.
      if (match === 'claims_failed' && rule.effect === 'allow') claimsFailed = true;
      if (match !== 'match') continue;
      // `where` judges the same credential as the rest of the rule: a token's subject is never matched
      // against the segments of the certificate's SPIFFE ID, nor the other way round.
      if (rule.where && !resourceConditionsHold(rule.where, bindings, credential)) {
        if (rule.effect === 'allow') resourceFailed = true;
        continue;
      }
      admitted = credential;
      break;
    }
    if (!admitted) continue;
    if (rule.effect === 'deny') return { allow: false, reason: 'rule_denied', rule: rule.name };
    const by = admitted === caller ? undefined : admitted;
    if (rule.limiter) {
      const admission = rule.limiter.take(describePeer(admitted), now);
      return admission instanceof Promise ? admission.then((a) => limited(rule, a, by)) : limited(rule, admission, by);
    }
    return by ? { allow: true, rule: rule.name, admitted: by } : { allow: true, rule: rule.name };
  }
  // Specific when it helps the operator: a rule would have matched but for the resource the path names, or
  // but for a claim. The resource is the nearer miss (the caller met every other condition of a rule), so it
  // is the one named when both happened.
  const reason = resourceFailed ? 'resource_mismatch' : claimsFailed ? 'claim_mismatch' : 'no_matching_rule';
  return { allow: false, reason };
}
