// Who may call: allow rules over the caller's SPIFFE ID, and --allow-issuer for callers that have only an
// OIDC identity; default deny. A denial is a returned decision with a bounded reason (for the audit log
// and metrics), never a thrown error.
import type { PeerIdentity } from '../authn/identity.js';
import { compileAllowRules } from '../spiffe/match.js';

export type Decision = { allow: true; rule: string } | { allow: false; reason: 'no_matching_rule' };

export interface PolicyOptions {
  allow: readonly string[];
  /** Explicit opt-in to admit any authenticated peer. */
  allowAny: boolean;
  /** JWT mode: issuer names whose every valid token is admitted (OIDC identities without a SPIFFE ID). */
  allowIssuers?: readonly string[];
}

export type Policy = (identity: PeerIdentity) => Decision;

/** Compiles the rules once (throws ERR_INVALID_ALLOW_RULE on a bad one). */
export function createPolicy(options: PolicyOptions): Policy {
  if (options.allowAny) return () => ({ allow: true, rule: '--allow-any' });
  const match = compileAllowRules(options.allow);
  const issuers = new Set(options.allowIssuers ?? []);
  return (identity) => {
    const rule = identity.id ? match(identity.id) : undefined;
    if (rule !== undefined) return { allow: true, rule };
    if (identity.method !== 'mtls' && identity.issuer !== undefined && issuers.has(identity.issuer)) {
      return { allow: true, rule: `--allow-issuer ${identity.issuer}` };
    }
    return { allow: false, reason: 'no_matching_rule' };
  };
}
