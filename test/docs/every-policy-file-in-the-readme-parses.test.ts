// Every whole policy file the README shows (a yaml block that starts with `version: 1`) is one the sidecar
// accepts: a reader who copies one gets a policy, not ERR_POLICY_INVALID.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { readme } from '../helpers/readme.js';

const policies = [...readme.matchAll(/```yaml\n(version: 1\n[\s\S]*?)```/g)].map((m, i) => [`#${i + 1}`, m[1]]);

describe('every policy file in the README parses', () => {
  it('there are several', () => {
    expect(policies.length).toBeGreaterThanOrEqual(4);
  });

  it.each(policies)('policy %s', (_n, text) => {
    expect(parsePolicy(text, 'README').rules.length).toBeGreaterThan(0);
  });
});
