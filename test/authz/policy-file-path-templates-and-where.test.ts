// Path templates and `where:` in the policy file: every mistake is ERR_POLICY_INVALID naming the file, the
// place (`rules[0].where[1].equals`) and its line, and an unknown key is an error, never ignored.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { policyRefusal } from '../helpers/authz.js';

const LABEL = '--policy-file /etc/sidecar/policy.yaml';

const refusal = (text: string) => policyRefusal(text, LABEL);

/** One rule in YAML: its path on line 5, `where:` on line 6 and its list (where a `where` error points) from line 7. */
const rule = (path: string, where: string) =>
  `version: 1\nrules:\n  - name: owners\n    effect: allow\n    path: ${path}\n    where:\n${where}\n`;
const TEMPLATE = "{ template: '/r/{owner}/{repo}/**' }";

describe('a policy file refuses, naming the place and its line', () => {
  const cases: [what: string, yaml: string, message: string, line: number][] = [
    [
      'a template without a binding',
      rule("{ template: '/r/*' }", '      - { segment: owner, in: [a] }'),
      'rules[0].path.template: template "/r/*" binds no segment: write it as { glob: /r/* }',
      5,
    ],
    [
      'an upper-case name',
      rule("{ template: '/r/{Owner}' }", '      - { segment: owner, in: [a] }'),
      'rules[0].path.template: template "/r/{Owner}": "{Owner}": a name is a lower-case letter',
      5,
    ],
    [
      'a name bound twice',
      rule("{ template: '/r/{a}/{a}' }", '      - { segment: a, in: [x] }'),
      'rules[0].path.template: template "/r/{a}/{a}": "{a}" is bound twice; give each segment its own name',
      5,
    ],
    [
      'a binding inside a segment',
      rule("{ template: '/r/x-{a}' }", '      - { segment: a, in: [x] }'),
      'rules[0].path.template: template "/r/x-{a}": "{" and "}" enclose a name that is a whole segment',
      5,
    ],
    [
      'a path kind that does not exist',
      rule("{ pattern: '/r/{a}' }", '      - { segment: a, in: [x] }'),
      'rules[0].path: unknown key "pattern"; expected exact, prefix, glob or template',
      5,
    ],
    [
      'where with a glob',
      rule('{ glob: /r/* }', '      - { segment: owner, in: [a] }'),
      'rules[0].where: needs a path template that binds the segments it names',
      7,
    ],
    [
      'where without any path',
      'version: 1\nrules:\n  - name: owners\n    effect: allow\n    where:\n      - { segment: owner, in: [a] }\n',
      'rules[0].where: needs a path template',
      6,
    ],
    ['an empty where', rule(TEMPLATE, '      []'), 'rules[0].where: expected a non-empty list of conditions', 7],
    [
      'a condition that is not a mapping',
      rule(TEMPLATE, '      - owner == claims.sub'),
      'rules[0].where[0]: expected { segment: NAME, equals: claims.sub }',
      7,
    ],
    [
      'an unknown key',
      rule(TEMPLATE, '      - { segment: owner, equal: claims.sub }'),
      'rules[0].where[0]: unknown key "equal"; expected one of segment, equals, in',
      7,
    ],
    [
      'a segment the template does not bind',
      rule(TEMPLATE, '      - { segment: ownr, equals: claims.sub }'),
      'rules[0].where[0].segment: "ownr" is not bound by the template /r/{owner}/{repo}/**; it binds owner, repo',
      7,
    ],
    [
      'a joined segment the template does not bind',
      rule(TEMPLATE, '      - { segment: owner/name, equals: claims.repository }'),
      'rules[0].where[0].segment: "name" is not bound',
      7,
    ],
    [
      'a binding joined twice',
      rule(TEMPLATE, '      - { segment: owner/owner, equals: claims.repository }'),
      'rules[0].where[0].segment: "owner" is named twice; join each binding once',
      7,
    ],
    [
      'no segment',
      rule(TEMPLATE, '      - { equals: claims.sub }'),
      'rules[0].where[0].segment: expected the name of a segment the template binds (owner, repo)',
      7,
    ],
    [
      'both equals and in',
      rule(TEMPLATE, '      - { segment: owner, equals: claims.sub, in: [a] }'),
      'rules[0].where[0]: give exactly one of equals, in',
      7,
    ],
    ['neither', rule(TEMPLATE, '      - { segment: owner }'), 'rules[0].where[0]: give exactly one of equals, in', 7],
    [
      'a literal in equals',
      rule(TEMPLATE, '      - { segment: owner, equals: alice }'),
      'rules[0].where[0].equals: "alice": expected claims.<claim path>',
      7,
    ],
    [
      'a number in equals',
      rule(TEMPLATE, '      - { segment: owner, equals: 42 }'),
      'rules[0].where[0].equals: expected claims.<claim path>',
      7,
    ],
    [
      'a bad claim path',
      rule(TEMPLATE, "      - { segment: owner, equals: 'claims.\"kubernetes.io' }"),
      'rules[0].where[0].equals: the claim path has a quote at character 1 that is never closed',
      7,
    ],
    [
      'a SPIFFE ID segment with a leading zero',
      rule(TEMPLATE, "      - { segment: owner, equals: 'id.segment[01]' }"),
      'rules[0].where[0].equals: "id.segment[01]"',
      7,
    ],
    [
      'an empty in',
      rule(TEMPLATE, '      - { segment: owner, in: [] }'),
      'rules[0].where[0].in: expected a non-empty list of strings',
      7,
    ],
    [
      'a number in in',
      rule(TEMPLATE, '      - { segment: owner, in: [42] }'),
      "rules[0].where[0].in: expected a non-empty list of strings (quote a number: '42')",
      7,
    ],
    [
      'a fixed value with "/" for one segment',
      rule(TEMPLATE, '      - { segment: owner, in: [a/b] }'),
      'rules[0].where[0].in[0]: a segment is never empty and never holds "/"',
      7,
    ],
    [
      'an empty fixed value',
      rule(TEMPLATE, "      - { segment: owner, in: [ok, ''] }"),
      'rules[0].where[0].in[1]: expected a non-empty string',
      7,
    ],
    [
      'a fixed value of the wrong number of segments for a join',
      rule(TEMPLATE, '      - { segment: owner/repo, in: [octo-org] }'),
      'rules[0].where[0].in[0]: owner/repo is 2 non-empty segments joined by "/"',
      7,
    ],
    [
      'claims.* in an allow rule without exactly one issuer',
      rule("{ template: '/sandboxes/{owner}' }", '      - { segment: owner, equals: claims.sub }'),
      'rules[0].where: claims.* compares with a token of one issuer: add callers.issuers with exactly that issuer',
      7,
    ],
    [
      'id.segment in an allow rule without callers.ids',
      rule("{ template: '/namespaces/{ns}' }", "      - { segment: ns, equals: 'id.segment[1]' }"),
      'rules[0].where: id.segment[N] compares with a SPIFFE ID: add callers.ids naming the trust domain',
      7,
    ],
    [
      // partner.org's /ns/prod/sa/x would be allowed on /namespaces/prod, which names example.org's namespace.
      'id.segment in an allow rule whose callers.ids name two trust domains',
      `version: 1\nrules:\n  - name: namespaces\n    effect: allow\n    path: { template: '/namespaces/{ns}/**' }\n` +
        `    callers: { ids: ['spiffe://example.org/ns/*/sa/*', 'spiffe://partner.org/ns/*/sa/*'] }\n` +
        `    where:\n      - { segment: ns, equals: 'id.segment[1]' }\n`,
      'rules[0].where: id.segment[N] compares with a SPIFFE ID of one trust domain, but callers.ids names example.org, partner.org',
      8,
    ],
  ];
  it.each(cases)('%s', (_what, yaml, message, line) => {
    const err = refusal(yaml);
    expect(err.message).toContain(`${LABEL}: ${message}`);
    expect(err.message).toMatch(new RegExp(`\\(line ${line}, column \\d+\\)$`));
  });
});

describe('a policy file accepts', () => {
  it('templates and where with every kind of value, in YAML', () => {
    const policy = parsePolicy(
      `version: 1
rules:
  - name: owners
    effect: allow
    path: { template: '/sandboxes/{owner}/**' }
    callers: { issuers: [keycloak] }
    where:
      - { segment: owner, equals: claims.sub }
  - name: namespaces
    effect: allow
    path: { template: '/namespaces/{ns}/**' }
    callers: { ids: ['spiffe://example.org/ns/*/sa/*'] }
    where:
      - { segment: ns, equals: 'id.segment[1]' }
  - name: trust-domains
    effect: allow
    path: { template: '/domains/{td}' }
    where:
      - { segment: td, equals: id.trust_domain }
  - name: keys
    effect: allow
    path: { template: '/keys/{name}/**' }
    where:
      - { segment: name, equals: key.name }
  - name: repositories
    effect: allow
    path: { template: '/repos/{owner}/{repo}/workflows/{workflow}' }
    callers: { issuers: [github] }
    where:
      - { segment: owner/repo, equals: claims.repository }
      - { segment: workflow, equals: claims.workflow }
      - { segment: owner, in: [octo-org, example-org] }
      - { segment: owner/repo, in: [octo-org/app] }
  - name: namespaced
    effect: allow
    path: { template: '/k8s/{ns}' }
    callers: { issuers: [k8s] }
    where:
      - { segment: ns, equals: 'claims."kubernetes.io".namespace' }
  - name: bindings-without-where
    effect: deny
    path: { template: '/legacy/{anything}' }
`,
      LABEL,
    );
    expect(policy.rules.map((r) => [r.name, r.template?.names, r.where?.length])).toEqual([
      ['owners', ['owner'], 1],
      ['namespaces', ['ns'], 1],
      ['trust-domains', ['td'], 1],
      ['keys', ['name'], 1],
      ['repositories', ['owner', 'repo', 'workflow'], 4],
      ['namespaced', ['ns'], 1],
      ['bindings-without-where', ['anything'], undefined],
    ]);
    expect(policy.rules[0].pathPattern).toEqual({ template: '/sandboxes/{owner}/**' });
    expect(policy.rules[0].path?.('/sandboxes/alice/x')).toBe(true);
    expect(policy.rules[0].path?.('/sandboxes')).toBe(false);
  });
});
