// The two operator commands, run as real processes: `policy check` prints the decision and the rule
// behind it (exit 0 allow, 3 deny, 1 bad input), and agrees with the shipped examples' promises;
// `apikey new` prints a fresh key once and the line that admits it, and a running sidecar fed that line
// admits that key.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseApiKeys } from '../../src/authn/api-keys.js';
import { writePolicy } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, writeServingFiles } from '../helpers/pki.js';
import { runCli } from '../helpers/process.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/policies/${name}`, import.meta.url));
const ROUTER = example('router-to-workload-manager.yaml');
const SANDBOX = example('sandbox-roles.yaml');
const K8S = example('kubernetes-namespace-auto-approval.yaml');
const GITHUB = example('github-actions-repository.yaml');

const ws = useWorkspace();
let partnersPolicy: string;

beforeAll(async () => {
  partnersPolicy = await writePolicy(ws.path, 'partners.json', {
    version: 1,
    rules: [
      { name: 'partners-read', effect: 'allow', methods: ['GET'], callers: { api_keys: ['partner-x'] } },
      { name: 'everyone-else-out', effect: 'deny' },
    ],
  });
});

const check = (...args: string[]) => runCli(['policy', 'check', ...args]);

describe('policy check prints the decision and the rule; exit 0 allow, 3 deny, 1 bad input', () => {
  // The full decision table runs in-process (test/authz/policy-check.test.ts); these run the real process.
  const cases: [what: string, args: string[], code: number, stdout: string][] = [
    [
      'the Router uses the WorkloadManager API',
      ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/router', 'POST', '/v1/workloads'],
      0,
      'allow\nrule: router-uses-the-api\n',
    ],
    [
      'a staging agent is refused by a named rule',
      ['--policy-file', K8S, '--id', 'spiffe://cluster.local/ns/staging/sa/agent', '--issuer', 'k8s', 'GET', '/'],
      3,
      'deny\nrule: other-namespaces-need-approval\nreason: rule_denied\n',
    ],
    [
      'a sandbox manager deletes a sandbox',
      [
        '--policy-file',
        SANDBOX,
        '--issuer',
        'keycloak',
        '--claims',
        '{"sub":"m","realm_access":{"roles":["sandbox:manage"]}}',
        'DELETE',
        '/sandboxes/s-1',
      ],
      0,
      'allow\nrule: managers-delete-sandboxes\n',
    ],
    [
      'another branch does not deploy',
      [
        '--policy-file',
        GITHUB,
        '--issuer',
        'github',
        '--claims',
        '{"sub":"x","repository":"example-org/agents","ref":"refs/heads/dev"}',
        'POST',
        '/deploy',
      ],
      3,
      'deny\nreason: claim_mismatch\n',
    ],
    [
      'an API key caller by name (JSON policy)',
      ['--policy-file', 'PARTNERS', '--api-key', 'partner-x', 'GET', '/orders'],
      0,
      'allow\nrule: partners-read\n',
    ],
    [
      'a path without a normal form',
      ['--policy-file', ROUTER, '--id', 'spiffe://example.org/ns/prod/sa/router', 'GET', '/v1/../admin'],
      3,
      'deny\nreason: path_not_normalized\n',
    ],
  ];
  it.concurrent.for(cases)('%s', async ([, args, code, stdout], { expect }) => {
    const result = await check(...args.map((a) => (a === 'PARTNERS' ? partnersPolicy : a)));
    expect({ code: result.code, stdout: result.stdout, stderr: result.stderr }).toEqual({ code, stdout, stderr: '' });
  });

  const bad: [what: string, args: string[], fragments: string[]][] = [
    [
      'a lower-case method',
      ['--policy-file', ROUTER, '--id', 'spiffe://example.org/a', 'get', '/'],
      ['ERR_CONFIG_INVALID', 'upper case'],
    ],
    [
      'a missing policy file',
      ['--policy-file', '/nonexistent/p.yaml', '--id', 'spiffe://example.org/a', 'GET', '/'],
      ['ERR_FILE_READ', '--policy-file /nonexistent/p.yaml'],
    ],
    [
      'claims that are not JSON',
      ['--policy-file', SANDBOX, '--issuer', 'keycloak', '--claims', '{roles: [admin]}', 'GET', '/'],
      ['ERR_CONFIG_INVALID', '--claims is not JSON'],
    ],
    [
      'no path',
      ['--policy-file', ROUTER, '--id', 'spiffe://example.org/a', 'GET'],
      ['ERR_CONFIG_INVALID', 'expected METHOD PATH'],
    ],
    [
      'an unknown flag',
      ['--policy-file', ROUTER, '--caller', 'x', 'GET', '/'],
      ['ERR_CONFIG_INVALID', "see 'spiffe-sidecar policy check --help'"],
    ],
  ];
  it.concurrent.for(bad)('bad input: %s', async ([, args, fragments], { expect }) => {
    const result = await check(...args);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    const line = result.stderr.trim();
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toMatch(/^spiffe-sidecar: ERR_[A-Z_]+: /);
    for (const fragment of fragments) expect(line).toContain(fragment);
  });

  it('warns, after the decision and on stdout, about a deny rule another spelling of the path escapes; exit codes unchanged', async () => {
    const file = await writePolicy(ws.path, 'escapable.yaml', {
      version: 1,
      rules: [
        { name: 'no-admin', effect: 'deny', path: { exact: '/admin' } },
        { name: 'everyone', effect: 'allow' },
      ],
    });
    const id = ['--id', 'spiffe://example.org/a'];
    const denied = await check('--policy-file', file, ...id, 'GET', '/admin');
    expect({ code: denied.code, stderr: denied.stderr }).toEqual({ code: 3, stderr: '' });
    expect(denied.stdout).toMatch(
      /^deny\nrule: no-admin\nreason: rule_denied\nwarning: deny rule "no-admin" \(path: \{ exact: \/admin \}\) does not match \/admin\/, \/admin\.json, \/Admin, which rule "everyone" allows; .*prefix: \/admin.*\n$/,
    );
    const escaped = await check('--policy-file', file, ...id, 'GET', '/Admin');
    expect(escaped.code).toBe(0);
    expect(escaped.stdout).toMatch(/^allow\nrule: everyone\nwarning: deny rule "no-admin" /);
    // Without METHOD PATH: only the file is checked, with the same warnings.
    const lint = await check('--policy-file', file);
    expect({ code: lint.code, stderr: lint.stderr }).toEqual({ code: 0, stderr: '' });
    expect(lint.stdout).toMatch(/^valid\nwarning: deny rule "no-admin" /);
    const clean = await check('--policy-file', ROUTER);
    expect({ code: clean.code, stdout: clean.stdout }).toEqual({ code: 0, stdout: 'valid\n' });
  });

  it('bad input: a broken policy file names the file and the place', async () => {
    const file = await writePolicy(
      ws.path,
      'broken.yaml',
      'version: 1\nrules:\n  - name: a\n    effect: allow\n    methods: [get]\n',
    );
    const result = await check('--policy-file', file, '--id', 'spiffe://example.org/a', 'GET', '/');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim()).toBe(
      `spiffe-sidecar: ERR_POLICY_INVALID: --policy-file ${file}: rules[0].methods[0]: expected an upper-case HTTP method such as GET or POST (line 5, column 15)`,
    );
  });

  it('bad input: an unknown policy subcommand', async () => {
    const result = await runCli(['policy', 'test', '--policy-file', ROUTER]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      "unknown command 'policy test': the command is policy check; see 'spiffe-sidecar policy --help'",
    );
  });
});

describe('apikey new', () => {
  let sidecar: TestSidecar;
  let keysFile: string;

  beforeAll(async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const dir = join(ws.path, 'sidecar');
    await mkdir(dir);
    const serving = await writeServingFiles(dir, await issueSvid(ca, { id: 'spiffe://example.org/api' }), ca.certPem);
    keysFile = join(dir, 'keys.txt');
    await writeFile(keysFile, '# no keys yet\n');
    sidecar = await startTestSidecar({
      upstream: ws.app.url,
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      'policy-file': await writePolicy(dir, 'policy.json', {
        version: 1,
        rules: [{ name: 'key-callers', effect: 'allow', callers: { auth: ['api_key'] } }],
      }),
      'api-keys-file': keysFile,
    });
  });
  afterAll(() => sidecar?.close());

  async function newKey(...args: string[]) {
    const result = await runCli(['apikey', 'new', ...args]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const key = /^key: {2}(sk_[A-Za-z0-9_-]{43})$/m.exec(result.stdout)?.[1];
    const line = /^line: (sha256:[0-9a-f]{64} .+)$/m.exec(result.stdout)?.[1];
    expect(key).toBeDefined();
    expect(line).toBeDefined();
    // Printed once: the key appears exactly once, and the line does not hold it.
    expect(result.stdout.split(key!)).toHaveLength(2);
    expect(line).not.toContain(key!.slice(3));
    return { key: key!, line: line!, stdout: result.stdout };
  }

  async function call(key: string, method = 'GET', path = '/orders') {
    const res = await requestVia(sidecar.port, undefined, { method, path, headers: { 'x-api-key': key } });
    return { status: res.status, body: JSON.parse(res.body) as Record<string, unknown> };
  }

  it('prints a key and a line; added to the file, the line admits exactly that key under its name', async () => {
    const { key, line, stdout } = await newKey('--name', 'partner-x');
    expect(stdout).toContain('--api-keys-file');
    expect(parseApiKeys(line, 'printed').authenticate(key, Date.now())).toMatchObject({
      ok: true,
      identity: { name: 'partner-x' },
    });
    expect((await call(key)).status).toBe(401);
    await writeFile(keysFile, `${line}\n`);
    await expect.poll(async () => (await call(key)).status, { timeout: 5000, interval: 50 }).toBe(200);
    expect(((await call(key)).body.headers as Record<string, string>)['x-api-key-name']).toBe('partner-x');
  });

  it('every run makes a new key', async () => {
    const [a, b] = await Promise.all([newKey('--name', 'a'), newKey('--name', 'a')]);
    expect(a.key).not.toBe(b.key);
    expect(a.line).not.toBe(b.line);
  });

  it('--expires and --route end up on the line and take effect in the sidecar', async () => {
    const before = Date.now();
    const { key, line } = await newKey(
      '--name',
      'reporter',
      '--expires',
      '90d',
      '--route',
      'GET:/reports/**',
      '--route',
      '*:/status',
    );
    const expires = /expires=(\S+)/.exec(line)?.[1];
    expect(Date.parse(expires!) - before).toBeGreaterThanOrEqual(90 * 86_400_000 - 2000);
    expect(Date.parse(expires!) - Date.now()).toBeLessThanOrEqual(90 * 86_400_000 + 2000);
    expect(line).toMatch(/ reporter created=\S+ expires=\S+ route=GET:\/reports\/\*\* route=\*:\/status$/);
    await writeFile(keysFile, `${line}\n`);
    await expect
      .poll(async () => (await call(key, 'GET', '/reports/daily')).status, { timeout: 5000, interval: 50 })
      .toBe(200);
    expect((await call(key, 'POST', '/status')).status).toBe(200);
    expect(await call(key, 'POST', '/reports/daily')).toEqual({
      status: 403,
      body: { error: 'forbidden', reason: 'key_route_denied' },
    });
    expect((await call(key, 'GET', '/orders')).body.reason).toBe('key_route_denied');
  });

  it('an ISO expiry date is printed in UTC', async () => {
    const { line } = await newKey('--name', 'yearly', '--expires', '2099-01-31');
    expect(line).toMatch(/ yearly created=\S+ expires=2099-01-31T00:00:00Z$/);
  });

  // Every refusal is unit-tested (test/authz/api-keys.test.ts); these check the process's exit and output.
  const bad: [what: string, args: string[], fragment: string][] = [
    ['no name', [], '--name is required'],
    ['an expiry in the past', ['--name', 'a', '--expires', '2020-01-01'], 'is in the past'],
    ['an unknown flag', ['--name', 'a', '--owner', 'bob'], "see 'spiffe-sidecar apikey new --help'"],
  ];
  it.concurrent.for(bad)('refuses %s with exit 1 and prints no key', async ([, args, fragment], { expect }) => {
    const result = await runCli(['apikey', 'new', ...args]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^spiffe-sidecar: ERR_CONFIG_INVALID: /);
    expect(result.stderr).toContain(fragment);
  });
});
