// `policy check`, from its argv (parsed by the real command-line parser) to its output: the decision
// and the rule behind it for every kind of caller, on the shipped examples. The real process (exit
// codes, stderr) is tested in test/e2e/policy-check-and-apikey-new-work-from-the-command-line.test.ts.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { policyCheck, policyWarnings } from '../../src/authz/policy-commands.js';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { SidecarError } from '../../src/errors.js';
import { runPolicyCheck } from '../helpers/policy-check.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/policies/${name}`, import.meta.url));
const ROUTER = example('router-to-workload-manager.yaml');
const SANDBOX = example('sandbox-roles.yaml');
const K8S = example('kubernetes-namespace-auto-approval.yaml');
const GITHUB = example('github-actions-repository.yaml');

/** Runs `spiffe-sidecar policy check ARGS` in-process: exit status and stdout. */
const check = runPolicyCheck;

const roles = (...r: string[]) => JSON.stringify({ sub: 'u', realm_access: { roles: r } });
const job = (repository: string, ref: string) =>
  JSON.stringify({ sub: `repo:${repository}:ref:${ref}`, repository, ref });

const cases: [what: string, args: string[], code: number, stdout: string][] = [
  [
    'router: the Router on the API',
    ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/router', 'DELETE', '/v1/workloads/w-1'],
    0,
    'allow\nrule: router-uses-the-api\n',
  ],
  [
    'router: another workload on the API',
    ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/scheduler', 'POST', '/v1/workloads'],
    3,
    'deny\nreason: no_matching_rule\n',
  ],
  [
    'router: another workload reads health',
    ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/scheduler', 'GET', '/healthz'],
    0,
    'allow\nrule: anyone-in-the-trust-domain-reads-health\n',
  ],
  [
    'router: another trust domain reads no health',
    ['--policy-file', ROUTER, '--id', 'spiffe://partner.org/ns/prod/sa/router', 'GET', '/healthz'],
    3,
    'deny\nreason: no_matching_rule\n',
  ],
  [
    'router: /v1x is not under /v1',
    ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/router', 'GET', '/v1x'],
    3,
    'deny\nreason: no_matching_rule\n',
  ],
  [
    'router: the query string is ignored',
    ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/router', 'GET', '/v1?x=/../'],
    0,
    'allow\nrule: router-uses-the-api\n',
  ],
  [
    'router: a dot segment',
    ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/router', 'GET', '/v1/../admin'],
    3,
    'deny\nreason: path_not_normalized\n',
  ],
  [
    'router: an encoded dot segment',
    ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/router', 'GET', '/v1/%2E%2E/admin'],
    3,
    'deny\nreason: path_not_normalized\n',
  ],
  [
    'router: a JWT-SVID of the Router is the Router too',
    [
      '--policy-file',
      ROUTER,
      '--id',
      'spiffe://example.org/ns/prod/sa/router',
      '--claims',
      '{"aud":"wm"}',
      'GET',
      '/v1',
    ],
    0,
    'allow\nrule: router-uses-the-api\n',
  ],
  [
    'k8s: a prod agent',
    ['--policy-file', K8S, '--id', 'spiffe://cluster.local/ns/prod/sa/agent', '--issuer', 'k8s', 'POST', '/tasks'],
    0,
    'allow\nrule: prod-agents-auto-approved\n',
  ],
  [
    'k8s: a staging agent',
    ['--policy-file', K8S, '--id', 'spiffe://cluster.local/ns/staging/sa/agent', '--issuer', 'k8s', 'GET', '/'],
    3,
    'deny\nrule: other-namespaces-need-approval\nreason: rule_denied\n',
  ],
  [
    'k8s: an OIDC caller',
    [
      '--policy-file',
      K8S,
      '--issuer',
      'keycloak',
      '--claims',
      '{"sub":"system:serviceaccount:prod:agent"}',
      'GET',
      '/',
    ],
    3,
    'deny\nreason: no_matching_rule\n',
  ],
  [
    'sandbox: invoke',
    ['--policy-file', SANDBOX, '--issuer', 'keycloak', '--claims', roles('sandbox:invoke'), 'POST', '/invoke'],
    0,
    'allow\nrule: invokers-run-code\n',
  ],
  [
    'sandbox: invoke cannot delete',
    ['--policy-file', SANDBOX, '--issuer', 'keycloak', '--claims', roles('sandbox:invoke'), 'DELETE', '/sandboxes/s-1'],
    3,
    'deny\nreason: claim_mismatch\n',
  ],
  [
    'sandbox: manage deletes',
    ['--policy-file', SANDBOX, '--issuer', 'keycloak', '--claims', roles('sandbox:manage'), 'DELETE', '/sandboxes/s-1'],
    0,
    'allow\nrule: managers-delete-sandboxes\n',
  ],
  [
    'sandbox: manage deletes one level only',
    [
      '--policy-file',
      SANDBOX,
      '--issuer',
      'keycloak',
      '--claims',
      roles('sandbox:manage'),
      'DELETE',
      '/sandboxes/s-1/files',
    ],
    3,
    'deny\nreason: claim_mismatch\n',
  ],
  [
    'sandbox: admin',
    ['--policy-file', SANDBOX, '--issuer', 'keycloak', '--claims', roles('admin'), 'PATCH', '/anything/at/all'],
    0,
    'allow\nrule: admins-do-everything\n',
  ],
  // Without --claims the caller has no claims at all: no claim rule can even be considered.
  [
    'sandbox: no claims',
    ['--policy-file', SANDBOX, '--issuer', 'keycloak', 'POST', '/invoke'],
    3,
    'deny\nreason: no_matching_rule\n',
  ],
  [
    'sandbox: another issuer',
    ['--policy-file', SANDBOX, '--issuer', 'github', '--claims', roles('admin'), 'POST', '/invoke'],
    3,
    'deny\nreason: no_matching_rule\n',
  ],
  [
    'github: main deploys',
    [
      '--policy-file',
      GITHUB,
      '--issuer',
      'github',
      '--claims',
      job('example-org/agents', 'refs/heads/main'),
      'POST',
      '/deploy',
    ],
    0,
    'allow\nrule: main-branch-deploys\n',
  ],
  [
    'github: a branch reads status',
    [
      '--policy-file',
      GITHUB,
      '--issuer',
      'github',
      '--claims',
      job('example-org/agents', 'refs/heads/x'),
      'GET',
      '/status/1',
    ],
    0,
    'allow\nrule: repository-reads-status\n',
  ],
  [
    'github: a branch does not deploy',
    [
      '--policy-file',
      GITHUB,
      '--issuer',
      'github',
      '--claims',
      job('example-org/agents', 'refs/heads/x'),
      'POST',
      '/deploy',
    ],
    3,
    'deny\nreason: claim_mismatch\n',
  ],
  [
    'github: another repository',
    [
      '--policy-file',
      GITHUB,
      '--issuer',
      'github',
      '--claims',
      job('example-org/agents2', 'refs/heads/main'),
      'POST',
      '/deploy',
    ],
    3,
    'deny\nreason: claim_mismatch\n',
  ],
  [
    'github: an API key caller',
    ['--policy-file', GITHUB, '--api-key', 'github', 'POST', '/deploy'],
    3,
    'deny\nreason: no_matching_rule\n',
  ],
];

describe('policy check decides like the sidecar', () => {
  it.each(cases)('%s', async (_what, args, code, stdout) => {
    expect(await check(...args)).toEqual({ code, stdout });
  });
});

describe('policy check refuses what does not describe a caller or a request', () => {
  const bad: [what: string, args: string[], code: string, message: string][] = [
    [
      'a lower-case method',
      ['--policy-file', ROUTER, '--id', 'spiffe://example.org/a', 'post', '/'],
      'ERR_CONFIG_INVALID',
      'upper case',
    ],
    [
      'no policy file',
      ['--id', 'spiffe://example.org/a', 'GET', '/'],
      'ERR_CONFIG_INVALID',
      '--policy-file is required',
    ],
    [
      'claims that are not JSON',
      ['--policy-file', SANDBOX, '--issuer', 'k', '--claims', 'roles=admin', 'GET', '/'],
      'ERR_CONFIG_INVALID',
      '--claims is not JSON',
    ],
    [
      'claims that are null',
      ['--policy-file', SANDBOX, '--issuer', 'k', '--claims', 'null', 'GET', '/'],
      'ERR_CONFIG_INVALID',
      '--claims must be a JSON object',
    ],
    [
      'claims that are a string',
      ['--policy-file', SANDBOX, '--issuer', 'k', '--claims', '"admin"', 'GET', '/'],
      'ERR_CONFIG_INVALID',
      '--claims must be a JSON object',
    ],
    [
      'an API key with claims',
      ['--policy-file', ROUTER, '--api-key', 'k', '--claims', '{}', 'GET', '/'],
      'ERR_CONFIG_INVALID',
      '--api-key excludes',
    ],
    [
      'claims without an issuer or ID',
      ['--policy-file', ROUTER, '--claims', '{}', 'GET', '/'],
      'ERR_CONFIG_INVALID',
      'describe the caller',
    ],
    [
      'a bad SPIFFE ID',
      ['--policy-file', ROUTER, '--id', 'spiffe://example.org/a/../b', 'GET', '/'],
      'ERR_INVALID_SPIFFE_ID',
      '',
    ],
  ];
  it.each(bad)('%s', async (_what, args, code, message) => {
    const err = await check(...args).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SidecarError);
    expect((err as SidecarError).code).toBe(code);
    expect((err as SidecarError).message).toContain(message);
  });
});

// Deny rules match exact bytes; `policy check` warns about a deny rule that another spelling of its path
// (a trailing "/", an added extension, other letter case) escapes into a later allow rule.
describe('policy check warns about deny rules that another spelling of the path escapes', () => {
  const everyone = { name: 'everyone', effect: 'allow', callers: { ids: ['spiffe://example.org'] } };
  const policyOf = async (...rules: object[]) => {
    const dir = await mkdtemp(join(tmpdir(), 'policy-check-'));
    const file = join(dir, 'policy.json');
    await writeFile(file, JSON.stringify({ version: 1, rules }));
    return file;
  };
  const run = async (file: string, method: string, path: string) =>
    check('--policy-file', file, '--id', 'spiffe://example.org/ns/a/sa/b', method, path);

  it('warns about an exact deny before an allow of everything, after the decision, keeping exit codes', async () => {
    const file = await policyOf({ name: 'no-admin', effect: 'deny', path: { exact: '/admin' } }, everyone);
    const denied = await run(file, 'GET', '/admin');
    expect(denied.code).toBe(3);
    const [first, ...rest] = denied.stdout.trimEnd().split('\n');
    expect(first).toBe('deny');
    expect(rest.slice(0, 2)).toEqual(['rule: no-admin', 'reason: rule_denied']);
    const warnings = rest.slice(2);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^warning: deny rule "no-admin" \(path: \{ exact: \/admin \}\) does not match /);
    for (const spelling of ['/admin/', '/admin.json', '/Admin', 'rule "everyone" allows', 'prefix: /admin'])
      expect(warnings[0]).toContain(spelling);
    // the escape is real: the sidecar would allow it
    const escaped = await run(file, 'GET', '/admin/');
    expect(escaped.code).toBe(0);
    expect(escaped.stdout.split('\n')[0]).toBe('allow');
    expect(escaped.stdout).toContain('warning: deny rule "no-admin"');
  });

  it('prints no warning for a prefix deny when the allow rules name what they permit', async () => {
    const file = await policyOf(
      { name: 'no-admin', effect: 'deny', path: { prefix: '/admin' } },
      { name: 'health', effect: 'allow', methods: ['GET'], path: { exact: '/healthz' } },
      { name: 'orders', effect: 'allow', path: { glob: '/v1/orders/*' } },
    );
    expect(await run(file, 'GET', '/admin/users')).toEqual({
      code: 3,
      stdout: 'deny\nrule: no-admin\nreason: rule_denied\n',
    });
    expect(await run(file, 'GET', '/healthz')).toEqual({ code: 0, stdout: 'allow\nrule: health\n' });
  });

  it('prints no warning for the shipped examples', async () => {
    for (const file of [ROUTER, SANDBOX, K8S, GITHUB]) {
      expect((await run(file, 'GET', '/')).stdout).not.toContain('warning');
    }
  });
});

describe('which deny rules the warning names, and with which spellings', () => {
  const everyone = { name: 'everyone', effect: 'allow' };
  const deny = (path: object, extra: object = {}) => ({ name: 'd', effect: 'deny', path, ...extra });
  /** The spellings named in the warning about rule "d" (none: no warning). */
  const escapes = (...rules: object[]): string[] => {
    const warnings = policyWarnings(parsePolicy(JSON.stringify({ version: 1, rules }), 'test'));
    const about = warnings.filter((w) => w.startsWith('warning: deny rule "d" '));
    expect(about.length).toBeLessThanOrEqual(1);
    const named = /does not match (.*), which rules? /.exec(about[0] ?? '');
    return named ? named[1].split(', ') : [];
  };
  const cases: [what: string, rules: object[], spellings: string[]][] = [
    [
      'exact, before an allow of everything',
      [deny({ exact: '/admin' }), everyone],
      ['/admin/', '/admin.json', '/Admin'],
    ],
    ['a percent escape keeps its case', [deny({ exact: '/a%3Ab' }), everyone], ['/a%3Ab/', '/a%3Ab.json', '/A%3Ab']],
    [
      'a segment with capitals is lower-cased',
      [deny({ exact: '/Admin%3AX' }), everyone],
      ['/Admin%3AX/', '/Admin%3AX.json', '/admin%3Ax'],
    ],
    ['exact with a trailing slash', [deny({ exact: '/admin/' }), everyone], ['/admin', '/Admin/']],
    [
      'exact, with only one segment changing case',
      [deny({ exact: '/v1/admin' }), everyone],
      ['/v1/admin/', '/v1/admin.json', '/V1/Admin'],
    ],
    [
      'prefix: the trailing slash and below are covered',
      [deny({ prefix: '/admin' }), everyone],
      ['/admin.json', '/Admin'],
    ],
    [
      'glob *: a trailing slash escapes, an extension is one segment',
      [deny({ glob: '/sandboxes/*' }), everyone],
      ['/sandboxes/1/', '/Sandboxes/1'],
    ],
    ['glob **: like a prefix', [deny({ glob: '/api/**' }), everyone], ['/api.json', '/Api']],
    ['no letters: no other case; an extension still escapes', [deny({ glob: '/1/**' }), everyone], ['/1.json']],
    ['the root: nothing escapes', [deny({ prefix: '/' }), everyone], []],
    ['no path: every path is denied', [{ name: 'd', effect: 'deny', methods: ['DELETE'] }, everyone], []],
    ['no later allow: the spellings fall to the default deny', [deny({ exact: '/admin' })], []],
    [
      'a later allow of other paths only',
      [deny({ exact: '/admin' }), { name: 'h', effect: 'allow', path: { exact: '/healthz' } }],
      [],
    ],
    [
      'the first later rule that matches decides: a later deny covers the spelling',
      [deny({ exact: '/admin' }), { name: 'd2', effect: 'deny', path: { prefix: '/admin' } }, everyone],
      ['/admin.json', '/Admin'],
    ],
    [
      'an earlier deny covers the spelling',
      [{ name: 'd0', effect: 'deny', path: { exact: '/admin/' } }, deny({ exact: '/admin' }), everyone],
      ['/admin.json', '/Admin'],
    ],
    [
      'a later deny of some callers only does not cover the spelling for the others',
      [
        deny({ exact: '/admin' }),
        { name: 'd2', effect: 'deny', path: { prefix: '/admin' }, callers: { auth: ['api_key'] } },
        everyone,
      ],
      ['/admin/', '/admin.json', '/Admin'],
    ],
    [
      'a later deny of some methods only does not cover the spelling for the others',
      [
        deny({ exact: '/admin' }),
        { name: 'd2', effect: 'deny', methods: ['GET'], path: { prefix: '/admin' } },
        everyone,
      ],
      ['/admin/', '/admin.json', '/Admin'],
    ],
    [
      'an allow for other methods only is not an escape',
      [deny({ exact: '/admin' }, { methods: ['DELETE'] }), { name: 'r', effect: 'allow', methods: ['GET'] }],
      [],
    ],
    [
      'a deny of GET is escaped into an allow of HEAD (GET covers HEAD)',
      [deny({ exact: '/admin' }, { methods: ['GET'] }), { name: 'r', effect: 'allow', methods: ['HEAD'] }],
      ['/admin/', '/admin.json', '/Admin'],
    ],
    [
      'an allow rule for other callers still counts (callers are ignored: the lint may over-warn)',
      [deny({ exact: '/admin' }), { name: 'r', effect: 'allow', callers: { api_keys: ['x'] } }],
      ['/admin/', '/admin.json', '/Admin'],
    ],
  ];
  it.each(cases)('%s', (_what, rules, spellings) => {
    expect(escapes(...rules)).toEqual(spellings);
  });

  it('suggests the fix that fits the rule', () => {
    const [glob] = policyWarnings(
      parsePolicy(JSON.stringify({ version: 1, rules: [deny({ glob: '/sandboxes/*' }), everyone] }), 'test'),
    );
    expect(glob).toContain('path: { glob: /sandboxes/*/** }');
    expect(glob).toContain('keep deny rules before the allow rules');
    const [exact] = policyWarnings(
      parsePolicy(JSON.stringify({ version: 1, rules: [deny({ exact: '/admin/' }), everyone] }), 'test'),
    );
    expect(exact).toContain('path: { prefix: /admin }');
  });
});

describe('policy check without METHOD PATH only validates the file and prints its warnings', () => {
  const run = async (options: Record<string, string>) => {
    const out = new PassThrough();
    let stdout = '';
    out.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await policyCheck(options, undefined, undefined, out);
    return { code, stdout };
  };

  it('valid, exit 0, with the warnings', async () => {
    expect(await run({ 'policy-file': ROUTER })).toEqual({ code: 0, stdout: 'valid\n' });
    const dir = await mkdtemp(join(tmpdir(), 'policy-lint-'));
    const file = join(dir, 'p.yaml');
    await writeFile(
      file,
      'version: 1\nrules:\n  - { name: no-admin, effect: deny, path: { exact: /admin } }\n  - { name: all, effect: allow }\n',
    );
    const { code, stdout } = await run({ 'policy-file': file });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^valid\nwarning: deny rule "no-admin" .*\n$/);
  });

  it('an invalid file, or a caller without a request, is bad input', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'policy-lint-'));
    const file = join(dir, 'p.yaml');
    await writeFile(file, 'version: 1\nrules: []\n');
    await expect(run({ 'policy-file': file })).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    await expect(run({ 'policy-file': ROUTER, id: 'spiffe://example.org/a' })).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
    });
  });
});
