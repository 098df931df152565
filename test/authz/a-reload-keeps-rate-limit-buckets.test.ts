// A policy reload must not hand every caller a fresh burst: buckets of rules that kept their name and
// limit carry over; a changed limit starts afresh.
import { describe, expect, it } from 'vitest';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { createFileAuthorizer, type Decision } from '../../src/authz/policy.js';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';

/** Local buckets decide at once: a promise here would make every rate-limited request wait. */
function atOnce(decision: Decision | Promise<Decision>): Decision {
  if (decision instanceof Promise) throw new Error('a local decision came as a promise');
  return decision;
}

const caller: PeerIdentity = { method: 'mtls', id: parseSpiffeId('spiffe://example.org/a'), leafSha256: '' };
const policy = (name: string, requests: number) =>
  parsePolicy(
    `version: 1\nrules:\n  - name: ${name}\n    effect: allow\n    rate_limit: { requests: ${requests}, per: 1h }\n`,
    'test',
  );

describe('a reload keeps rate-limit buckets', () => {
  it('carries the bucket of an unchanged rule over, and resets a changed one', () => {
    let current = policy('r', 2);
    const now = () => 1_000_000;
    const authorizer = createFileAuthorizer(() => current, { now });
    expect(atOnce(authorizer.decide(caller, 'GET', '/')).allow).toBe(true);
    expect(atOnce(authorizer.decide(caller, 'GET', '/')).allow).toBe(true);
    expect(authorizer.decide(caller, 'GET', '/')).toMatchObject({ allow: false, reason: 'rate_limited' });

    current = policy('r', 2); // the same file reloaded (e.g. a comment changed)
    expect(authorizer.decide(caller, 'GET', '/')).toMatchObject({ allow: false, reason: 'rate_limited' });

    current = policy('r', 3); // a new limit: a new bucket
    expect(atOnce(authorizer.decide(caller, 'GET', '/')).allow).toBe(true);

    current = policy('other', 3); // another rule name: a new bucket
    expect(atOnce(authorizer.decide(caller, 'GET', '/')).allow).toBe(true);
  });
});
