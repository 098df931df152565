// Who may call: allow rules over the caller's SPIFFE ID, default deny. A denial is a returned decision
// with a bounded reason (for the audit log and metrics), never a thrown error.
import type { PeerIdentity } from '../authn/identity.js';
import { compileAllowRules } from '../spiffe/match.js';

export type Decision = { allow: true; rule: string } | { allow: false; reason: 'no_matching_rule' };

export interface PolicyOptions {
  allow: readonly string[];
  /** Explicit opt-in to admit any authenticated peer. */
  allowAny: boolean;
}

export type Policy = (identity: PeerIdentity) => Decision;

/** Compiles the rules once (throws ERR_INVALID_ALLOW_RULE on a bad one). */
export function createPolicy(options: PolicyOptions): Policy {
  if (options.allowAny) return () => ({ allow: true, rule: '--allow-any' });
  const match = compileAllowRules(options.allow);
  return (identity) => {
    const rule = match(identity.id);
    return rule === undefined ? { allow: false, reason: 'no_matching_rule' } : { allow: true, rule };
  };
}
