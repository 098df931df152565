// `policy check`, from its argv (parsed by the real command-line parser) to its output: the decision
// and the rule behind it for every kind of caller, on the shipped examples. The real process (exit
// codes, stderr) is tested in test/e2e/policy-check-and-apikey-new-work-from-the-command-line.test.ts.
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { policyCheck } from '../../src/authz/policy-commands.js';
import { parseCommandLine } from '../../src/cli.js';
import { SidecarError } from '../../src/errors.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/policies/${name}`, import.meta.url));
const ROUTER = example('router-to-workload-manager.yaml');
const SANDBOX = example('sandbox-roles.yaml');
const K8S = example('kubernetes-namespace-auto-approval.yaml');
const GITHUB = example('github-actions-repository.yaml');

/** Runs `spiffe-sidecar policy check ARGS` in-process: exit status and stdout. */
async function check(...args: string[]): Promise<{ code: number; stdout: string }> {
  const command = parseCommandLine(['policy', 'check', ...args], {});
  if (command.command !== 'policy-check') throw new Error(`parsed as ${command.command}`);
  const out = new PassThrough();
  let stdout = '';
  out.on('data', (d: Buffer) => (stdout += d.toString()));
  const code = await policyCheck(command.options, command.method, command.path, out);
  return { code, stdout };
}

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
