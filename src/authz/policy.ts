// Who may call what. Two sources of rules: the allow flags (`--allow`, `--allow-any`, `--allow-issuer`:
// who, on any path, decided once per caller) or a policy file (`--policy-file`: per method and path,
// decided per request). Either way the default is deny, and a denial is a returned decision with a
// bounded reason (for the audit log and metrics), never a thrown error.
import type { PeerIdentity } from '../authn/identity.js';
import { routeAllowed } from '../authn/api-keys.js';
import { compileAllowRules, type IdMatcher } from '../spiffe/match.js';
import { normalizeRequestPath } from '../path-match.js';
import type { CompiledPolicy } from './policy-file.js';
import { type RateLimit, type RuleLimiter, sameLimit } from './rate-limiter.js';
import { type CertificateIdentity, type Decision, evaluateRules } from './rule-engine.js';

export type { CertificateIdentity, Decision, DenyReason } from './rule-engine.js';

export interface Authorizer {
  /** False when decisions depend on the caller alone: an mTLS connection is then decided once. */
  readonly perRequest: boolean;
  /**
   * `target` is the request target as received (path and query). `certificate`: the connection's verified
   * certificate when the request also carries a token or key (`caller`); either may be what a rule admits
   * (see evaluateRules). A promise only where a rule counts in a shared rate-limit store.
   */
  decide(
    caller: PeerIdentity,
    method: string,
    target: string,
    certificate?: CertificateIdentity,
  ): Decision | Promise<Decision>;
}

export interface AllowFlags {
  allow: readonly string[];
  /** `allow` as buildConfig compiled it (Config.allowRules); compiled here only when absent. */
  allowRules?: IdMatcher;
  /** Explicit opt-in to admit any authenticated peer. */
  allowAny: boolean;
  /** JWT mode: issuer names whose every valid token is admitted (OIDC identities without a SPIFFE ID). */
  allowIssuers?: readonly string[];
}

/**
 * An API key line may limit its key to some routes, whatever the rules say. A `GET` route covers `HEAD`
 * as a rule's `methods` do (see methodCovered).
 */
function keyRouteRefused(caller: PeerIdentity, method: string, path: string | undefined): boolean {
  const routes = caller.method === 'api-key' ? caller.routes : undefined;
  if (routes === undefined) return false;
  if (path === undefined) return true;
  return !routeAllowed(routes, method, path) && !(method === 'HEAD' && routeAllowed(routes, 'GET', path));
}

/** The allow flags (without `allowRules`, throws ERR_INVALID_ALLOW_RULE on a bad rule). */
export function createFlagAuthorizer(flags: AllowFlags): Authorizer {
  const match = flags.allowRules ?? compileAllowRules(flags.allow);
  const issuers = new Set(flags.allowIssuers ?? []);
  const ruleFor = (caller: PeerIdentity): string | undefined => {
    const rule = caller.id ? match(caller.id) : undefined;
    if (rule !== undefined) return rule;
    if (caller.method !== 'mtls' && caller.method !== 'api-key' && caller.issuer !== undefined) {
      return issuers.has(caller.issuer) ? `--allow-issuer ${caller.issuer}` : undefined;
    }
    return undefined;
  };
  // As for rules: the request's credential first, then the connection's certificate; never both at once.
  const byCaller = (caller: PeerIdentity, certificate: CertificateIdentity | undefined): Decision => {
    if (flags.allowAny) return { allow: true, rule: '--allow-any' };
    const rule = ruleFor(caller);
    if (rule !== undefined) return { allow: true, rule };
    const byCertificate = certificate && ruleFor(certificate);
    if (byCertificate !== undefined) return { allow: true, rule: byCertificate, admitted: certificate };
    return { allow: false, reason: 'no_matching_rule' };
  };
  return {
    perRequest: false,
    decide(caller, method, target, certificate) {
      if (caller.method === 'api-key' && keyRouteRefused(caller, method, normalizeRequestPath(target))) {
        return { allow: false, reason: 'key_route_denied' };
      }
      return byCaller(caller, certificate);
    },
  };
}

/**
 * A reloaded policy keeps the rate-limit state of every rule that kept its name and its limit: a reload
 * must not hand every caller a fresh burst.
 */
function keepLimiters(previous: CompiledPolicy, next: CompiledPolicy): void {
  const old = new Map(previous.rules.map((r) => [r.name, r.limiter]));
  for (const rule of next.rules) {
    const limiter = old.get(rule.name);
    if (rule.limiter && limiter && sameLimit(rule.limiter.limit, limiter.limit)) rule.limiter = limiter;
  }
}

/** Where a rule counts when a shared store is configured: its buckets are keyed by name and limit. */
export type SharedLimiters = (rule: string, limit: RateLimit) => RuleLimiter;

/** Every rate-limited rule of `policy` counts in the shared store (which keeps buckets across reloads). */
function shareLimiters(policy: CompiledPolicy, shared: SharedLimiters): void {
  for (const rule of policy.rules) if (rule.limiter) rule.limiter = shared(rule.name, rule.limiter.limit);
}

/**
 * A policy file; `current` returns the policy in force (it is swapped on reload). With `shared`, rate
 * limits count in a store every replica shares (`--rate-limit-store`) instead of this process's buckets.
 */
export function createFileAuthorizer(
  current: () => CompiledPolicy,
  options: { now?: () => number; shared?: SharedLimiters } = {},
): Authorizer {
  const { now = Date.now, shared } = options;
  let inForce = current();
  if (shared) shareLimiters(inForce, shared);
  return {
    perRequest: true,
    decide(caller, method, target, certificate) {
      const path = normalizeRequestPath(target);
      if (path === undefined) return { allow: false, reason: 'path_not_normalized' };
      if (keyRouteRefused(caller, method, path)) return { allow: false, reason: 'key_route_denied' };
      const policy = current();
      if (policy !== inForce) {
        if (shared) shareLimiters(policy, shared);
        else keepLimiters(inForce, policy);
        inForce = policy;
      }
      return evaluateRules(policy.rules, caller, { method, path }, now(), certificate);
    },
  };
}
