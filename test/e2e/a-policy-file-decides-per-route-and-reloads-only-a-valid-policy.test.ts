// A policy file in front of a real app, over real mTLS: each request is decided on its method, its path
// in normal form and its caller; the decision is audit-logged and counted. The file is hot-reloaded with
// validate-then-swap (watch and SIGHUP): a broken file never replaces a good one, and a broken file at
// startup is one clear error naming --policy-file.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSidecar } from '../../src/app.js';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { buildConfig } from '../../src/config.js';
import {
  apiKey,
  decisions,
  lastAudit,
  onOneConnection,
  scrapeMetrics,
  waitForLog,
  writePolicy,
} from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { runCli, startCli, waitForEvent, fileModeArgs } from '../helpers/process.js';
import { writeSecretVolume } from '../helpers/secret-volume.js';
import { capturingLogger, startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const SERVER_ID = 'spiffe://example.org/ns/prod/sa/orders';
const CLIENT_ID = 'spiffe://example.org/ns/prod/sa/client';
const OTHER_ID = 'spiffe://example.org/ns/prod/sa/other';

const ws = useWorkspace();
let serving: ServingFiles;
let client: IssuedCertificate;
let other: IssuedCertificate;

const V1 = {
  version: 1,
  rules: [
    {
      name: 'health-for-the-trust-domain',
      effect: 'allow',
      methods: ['GET'],
      path: { exact: '/healthz' },
      callers: { ids: ['spiffe://example.org'] },
    },
    { name: 'no-admin', effect: 'deny', path: { prefix: '/admin' } },
    { name: 'client-reads', effect: 'allow', methods: ['GET'], path: { prefix: '/v1' }, callers: { ids: [CLIENT_ID] } },
    {
      name: 'client-creates-order-items',
      effect: 'allow',
      methods: ['POST'],
      path: { glob: '/v1/orders/*' },
      callers: { ids: [CLIENT_ID] },
    },
  ],
};

/** V1 with the admin area opened to the client (and closed to everyone else). */
const V2 = {
  version: 1,
  rules: [
    { name: 'client-administers', effect: 'allow', path: { prefix: '/admin' }, callers: { ids: [CLIENT_ID] } },
    ...V1.rules,
  ],
};

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  await mkdir(join(ws.path, 'certs'));
  serving = await writeServingFiles(join(ws.path, 'certs'), await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  [client, other] = await Promise.all([issueSvid(ca, { id: CLIENT_ID }), issueSvid(ca, { id: OTHER_ID })]);
});

function identityFlags() {
  return {
    upstream: ws.app.url,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
  };
}

async function status(port: number, cert: IssuedCertificate, method: string, path: string) {
  const res = await requestVia(port, cert, { method, path });
  return res.status;
}

describe('a policy file decides each request on its method, path and caller', () => {
  let sidecar: TestSidecar;
  let policyDir: string;
  let policyFile: string;

  beforeAll(async () => {
    policyDir = join(ws.path, 'policy');
    await mkdir(policyDir);
    policyFile = await writePolicy(policyDir, 'policy.json', V1);
    sidecar = await startTestSidecar({ ...identityFlags(), 'policy-file': policyFile });
  });
  afterAll(() => sidecar.close());

  it('per route: the allowed reach the app with their identity, the denied get 403 and the app sees nothing', async () => {
    const allowed = await requestVia(sidecar.port, client, { path: '/v1/orders' });
    expect(allowed.status).toBe(200);
    expect(JSON.parse(allowed.body).headers['x-spiffe-id']).toBe(CLIENT_ID);
    expect(await status(sidecar.port, client, 'POST', '/v1/orders/o-1')).toBe(200);
    expect(await status(sidecar.port, other, 'GET', '/healthz')).toBe(200);

    const seen = ws.app.seen.length;
    const denied: [IssuedCertificate, string, string, string][] = [
      [client, 'GET', '/admin', 'rule_denied'],
      [client, 'GET', '/admin/users', 'rule_denied'],
      [client, 'POST', '/v1/orders/o-1/items', 'no_matching_rule'],
      [client, 'POST', '/v1/orders/', 'no_matching_rule'],
      [client, 'DELETE', '/v1/orders', 'no_matching_rule'],
      [client, 'GET', '/v1x', 'no_matching_rule'],
      [client, 'POST', '/healthz', 'no_matching_rule'],
      [client, 'GET', '/healthz/', 'no_matching_rule'],
      [other, 'GET', '/v1/orders', 'no_matching_rule'],
    ];
    for (const [cert, method, path, reason] of denied) {
      const res = await requestVia(sidecar.port, cert, { method, path });
      expect({ method, path, status: res.status, body: JSON.parse(res.body) }).toEqual({
        method,
        path,
        status: 403,
        body: { error: 'forbidden', reason },
      });
    }
    expect(ws.app.seen.length).toBe(seen);
  });

  it('a path without a normal form is refused with 400 before any rule; encodings of a denied path stay denied', async () => {
    const seen = ws.app.seen.length;
    for (const path of [
      '/v1/../admin',
      '/v1/%2e%2e/admin',
      '/v1/%2E%2E/admin',
      '/v1/./orders',
      '//v1',
      '/v1%2Forders',
    ]) {
      const res = await requestVia(sidecar.port, client, { path });
      expect({ path, status: res.status, body: JSON.parse(res.body) }).toEqual({
        path,
        status: 400,
        body: { error: 'bad_request', reason: 'path_not_normalized' },
      });
    }
    for (const path of ['/%61dmin', '/%61%64%6d%69%6e/users', '/admin?next=/v1']) {
      expect({ path, status: await status(sidecar.port, client, 'GET', path) }).toEqual({ path, status: 403 });
    }
    expect(ws.app.seen.length).toBe(seen);
    // Unreserved escapes are decoded for the decision; the app gets the target as it was sent.
    const res = await requestVia(sidecar.port, client, { path: '/%76%31/orders?q=%2F..' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).url).toBe('/%76%31/orders?q=%2F..');
  });

  it('decides per request: one mTLS connection is allowed on one route and denied on another', async () => {
    const answers = await onOneConnection(sidecar.port, client, [
      { path: '/v1/orders' },
      { path: '/admin' },
      { path: '/v1/orders' },
      { path: '/v1/../admin' },
    ]);
    expect(answers.map((a) => [a.status, a.reused])).toEqual([
      [200, false],
      [403, true],
      [200, true],
      [400, true],
    ]);
  });

  it('each decision is one audit line with auth, decision, rule and reason', async () => {
    await requestVia(sidecar.port, client, { path: '/v1/audited?token=secret' });
    expect(await lastAudit(sidecar.logs, 'GET', '/v1/audited')).toMatchObject({
      peer: CLIENT_ID,
      auth: 'mtls',
      decision: 'allow',
      rule: 'client-reads',
    });
    await requestVia(sidecar.port, client, { method: 'DELETE', path: '/admin/audited' });
    const denied = await lastAudit(sidecar.logs, 'DELETE', '/admin/audited');
    expect(denied).toMatchObject({ auth: 'mtls', decision: 'deny', rule: 'no-admin', reason: 'rule_denied' });
    expect(denied).not.toHaveProperty('dry_run');
    const from = sidecar.logs.length;
    await requestVia(sidecar.port, other, { path: '/v1/audited' });
    const unmatched = await lastAudit(sidecar.logs, 'GET', '/v1/audited', from);
    expect(unmatched).toMatchObject({ peer: OTHER_ID, decision: 'deny', reason: 'no_matching_rule' });
    expect(unmatched).not.toHaveProperty('rule');
    // The query string may carry secrets: never logged.
    expect(JSON.stringify(sidecar.logs)).not.toContain('token=secret');
  });

  it('decisions are counted by decision and bounded reason', async () => {
    const before = await scrapeMetrics(sidecar.adminAddress().port);
    await requestVia(sidecar.port, client, { path: '/v1/counted' });
    await requestVia(sidecar.port, client, { path: '/admin' });
    await requestVia(sidecar.port, other, { path: '/v1/counted' });
    await requestVia(sidecar.port, other, { path: '/a/../b' });
    const after = await scrapeMetrics(sidecar.adminAddress().port);
    for (const [decision, reason] of [
      ['allow', 'rule_matched'],
      ['deny', 'rule_denied'],
      ['deny', 'no_matching_rule'],
      ['deny', 'path_not_normalized'],
    ] as const) {
      expect({ decision, reason, n: decisions(after, decision, reason) - decisions(before, decision, reason) }).toEqual(
        {
          decision,
          reason,
          n: 1,
        },
      );
    }
    // Labels stay bounded: never a SPIFFE ID, a path or a rule name.
    const labels = after.split('\n').filter((l) => l.startsWith('spiffe_sidecar_authz_decisions_total{'));
    expect(labels.join('\n')).not.toMatch(/spiffe:\/\/|\/v1|client-reads|no-admin/);
  });

  it('a valid change is picked up by the watch; a broken one is logged and the last good policy stays', async () => {
    const from = sidecar.logs.length;
    await writePolicy(policyDir, 'policy.json', V2);
    await expect.poll(() => status(sidecar.port, client, 'GET', '/admin'), { timeout: 5000, interval: 50 }).toBe(200);
    expect(await waitForLog(sidecar.logs, { event: 'file_reloaded', flag: '--policy-file' }, from)).toMatchObject({
      file: policyFile,
      trigger: 'watch',
    });
    expect(await status(sidecar.port, other, 'GET', '/admin')).toBe(403);

    const broken: [string, string, string][] = [
      ['an unknown key', JSON.stringify({ ...V1, rules: [{ ...V1.rules[0], paths: {} }] }), 'ERR_POLICY_INVALID'],
      ['no rules (deny everything?)', JSON.stringify({ version: 1, rules: [] }), 'ERR_POLICY_INVALID'],
      ['a truncated file', JSON.stringify(V1).slice(0, 40), 'ERR_POLICY_INVALID'],
      ['an empty file', '', 'ERR_POLICY_INVALID'],
      [
        'a bad glob',
        JSON.stringify({ version: 1, rules: [{ name: 'a', effect: 'allow', path: { glob: '/a*' } }] }),
        'ERR_POLICY_INVALID',
      ],
    ];
    for (const [what, text, reason] of broken) {
      const mark = sidecar.logs.length;
      await writeFile(policyFile, text);
      const failed = await waitForLog(sidecar.logs, { event: 'reload_failed', flag: '--policy-file' }, mark);
      expect({ what, reason: failed.reason }).toEqual({ what, reason });
      expect(failed.msg).toContain('keeping the last good one');
      // V2 is still in force.
      expect(await status(sidecar.port, client, 'GET', '/admin')).toBe(200);
      expect(await status(sidecar.port, other, 'GET', '/admin')).toBe(403);
      expect(await status(sidecar.port, client, 'GET', '/v1/orders')).toBe(200);
    }
    const mark = sidecar.logs.length;
    await rm(policyFile);
    await waitForLog(sidecar.logs, { event: 'reload_failed', flag: '--policy-file', reason: 'ERR_FILE_READ' }, mark);
    expect(await status(sidecar.port, client, 'GET', '/admin')).toBe(200);

    // And a valid file again applies.
    await writePolicy(policyDir, 'policy.json', V1);
    await expect.poll(() => status(sidecar.port, client, 'GET', '/admin'), { timeout: 5000, interval: 50 }).toBe(403);
  });
});

describe('without a watch, a reload (SIGHUP) re-reads the policy', () => {
  it('in-process: nothing changes until the reload; a broken file on reload keeps the old policy', async () => {
    const dir = join(ws.path, 'nowatch');
    await mkdir(dir);
    const file = await writePolicy(dir, 'policy.yaml', V1);
    const sidecar = await startTestSidecar({ ...identityFlags(), 'policy-file': file, watch: false });
    // A control that watches the same file: once it has reloaded, a watch would have.
    const watching = await startTestSidecar({ ...identityFlags(), 'policy-file': file });
    try {
      await writePolicy(dir, 'policy.yaml', V2);
      await waitForLog(watching.logs, { event: 'file_reloaded', flag: '--policy-file', trigger: 'watch' });
      // No watch: the old policy holds until told otherwise.
      expect(await status(sidecar.port, client, 'GET', '/admin')).toBe(403);
      await sidecar.reload('SIGHUP');
      expect(sidecar.logs.find((l) => l.event === 'file_reloaded')).toMatchObject({
        flag: '--policy-file',
        trigger: 'SIGHUP',
      });
      expect(await status(sidecar.port, client, 'GET', '/admin')).toBe(200);

      await writeFile(file, 'version: 1\nrules:\n  - name: a\n    effect: allow\n    effect: deny\n');
      await sidecar.reload('SIGHUP');
      expect(sidecar.logs.find((l) => l.event === 'reload_failed')).toMatchObject({
        flag: '--policy-file',
        reason: 'ERR_POLICY_INVALID',
        trigger: 'SIGHUP',
      });
      expect(await status(sidecar.port, client, 'GET', '/admin')).toBe(200);
      expect(await status(sidecar.port, other, 'GET', '/admin')).toBe(403);
    } finally {
      await watching.close();
      await sidecar.close();
    }
  });

  it('the real process: SIGHUP applies a new policy and refuses a broken one', async () => {
    const dir = join(ws.path, 'process');
    await mkdir(dir);
    const file = await writePolicy(dir, 'policy.json', V1);
    const cli = startCli(fileModeArgs(ws.app.url, serving, '--policy-file', file, '--no-watch'));
    try {
      const port = ((await waitForEvent(cli, 'started')).listen as { port: number }).port;
      expect(await status(port, client, 'GET', '/admin')).toBe(403);
      await writePolicy(dir, 'policy.json', V2);
      cli.child.kill('SIGHUP');
      await waitForEvent(cli, 'file_reloaded');
      expect(await status(port, client, 'GET', '/admin')).toBe(200);
      await writeFile(file, '{"version": 1, "rules": [{"name": "a", "effect": "allow", "methods": ["get"]}]}');
      cli.child.kill('SIGHUP');
      const failed = await waitForEvent(cli, 'reload_failed');
      expect(failed).toMatchObject({ flag: '--policy-file', reason: 'ERR_POLICY_INVALID' });
      expect(failed.msg).toContain('rules[0].methods[0]');
      expect(await status(port, client, 'GET', '/admin')).toBe(200);
      expect(await status(port, other, 'GET', '/admin')).toBe(403);
    } finally {
      cli.child.kill('SIGTERM');
      await cli.exited;
    }
  });
});

describe('policies and keys mounted from Kubernetes volumes, or on file systems without change events', () => {
  it('a ConfigMap/Secret update (kubelet swaps the ..data symlink) is picked up, and a broken one is not', async () => {
    const volume = join(ws.path, 'configmap');
    const key = apiKey('partner');
    await writeSecretVolume(volume, { 'policy.json': JSON.stringify(V1), 'keys.txt': '' });
    const sidecar = await startTestSidecar({
      ...identityFlags(),
      'policy-file': join(volume, 'policy.json'),
      'api-keys-file': join(volume, 'keys.txt'),
    });
    try {
      expect(await status(sidecar.port, client, 'GET', '/admin')).toBe(403);
      const keyStatus = async () =>
        (await requestVia(sidecar.port, undefined, { path: '/v1/x', headers: { 'x-api-key': key.key } })).status;
      expect(await keyStatus()).toBe(401);
      const withKey = {
        version: 1,
        rules: [...V2.rules, { name: 'partner-reads', effect: 'allow', callers: { api_keys: ['partner'] } }],
      };
      await writeSecretVolume(volume, { 'policy.json': JSON.stringify(withKey), 'keys.txt': `${key.line}\n` });
      await expect.poll(() => status(sidecar.port, client, 'GET', '/admin'), { timeout: 5000, interval: 50 }).toBe(200);
      await expect.poll(keyStatus, { timeout: 5000, interval: 50 }).toBe(200);

      const mark = sidecar.logs.length;
      await writeSecretVolume(volume, { 'policy.json': '{"version": 1, "rules": "all"}', 'keys.txt': 'garbage\n' });
      await waitForLog(sidecar.logs, { event: 'reload_failed', flag: '--policy-file' }, mark);
      await waitForLog(sidecar.logs, { event: 'reload_failed', flag: '--api-keys-file' }, mark);
      expect(await status(sidecar.port, client, 'GET', '/admin')).toBe(200);
      expect(await keyStatus()).toBe(200);
    } finally {
      await sidecar.close();
    }
  });

  it('--reload-interval (watching off) re-reads the policy and the API keys too, not only the SVID', async () => {
    // --reload-interval exists for file systems without change events; there, it is the only way a
    // policy change or a key revocation (a removed line) ever takes effect without a signal.
    const dir = join(ws.path, 'interval');
    await mkdir(dir);
    const key = apiKey('partner');
    const file = await writePolicy(dir, 'policy.json', {
      version: 1,
      rules: [...V1.rules, { name: 'partner-reads', effect: 'allow', callers: { api_keys: ['partner'] } }],
    });
    const keys = join(dir, 'keys.txt');
    await writeFile(keys, `${key.line}\n`);
    const sidecar = await startTestSidecar({
      ...identityFlags(),
      'policy-file': file,
      'api-keys-file': keys,
      watch: false,
      'reload-interval': '1s',
    });
    try {
      await writePolicy(dir, 'policy.json', V2);
      await writeFile(keys, '');
      await expect
        .poll(() => status(sidecar.port, client, 'GET', '/admin'), { timeout: 3500, interval: 100 })
        .toBe(200);
      const revoked = await requestVia(sidecar.port, undefined, { path: '/v1/x', headers: { 'x-api-key': key.key } });
      expect(revoked.status).toBe(401);
    } finally {
      await sidecar.close();
    }
  });
});

describe('a broken policy or key file at startup is one clear error naming the flag', () => {
  function args(...extra: string[]) {
    return fileModeArgs(ws.app.url, serving, ...extra);
  }

  async function expectStartupError(argv: string[], code: string, ...fragments: string[]) {
    const result = await runCli(argv);
    expect(result.code).toBe(1);
    expect(result.stdout).not.toContain('"event":"started"');
    const line = result.stderr.trim();
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toContain(`spiffe-sidecar: ${code}: `);
    for (const fragment of fragments) expect(line).toContain(fragment);
  }

  it('a policy with a mistake names the file and the place', async () => {
    const file = await writePolicy(
      ws.path,
      'broken.yaml',
      'version: 1\nrules:\n  - name: ok\n    effect: allow\n  - name: bad\n    effect: allow\n    path: { glob: /sandboxes/x* }\n',
    );
    await expectStartupError(
      args('--policy-file', file),
      'ERR_POLICY_INVALID',
      `--policy-file ${file}: rules[1].path.glob: `,
      'whole segments',
    );
  });

  it('a policy that is not YAML', async () => {
    const file = await writePolicy(ws.path, 'not-yaml.yaml', 'version: 1\nrules: [\n');
    await expectStartupError(
      args('--policy-file', file),
      'ERR_POLICY_INVALID',
      `--policy-file ${file}: not valid YAML or JSON`,
    );
  });

  it('a missing policy file', async () => {
    const file = join(ws.path, 'missing.yaml');
    await expectStartupError(args('--policy-file', file), 'ERR_FILE_READ', `--policy-file ${file}`, 'no such file');
  });

  it('a policy file that is a directory', async () => {
    await expectStartupError(args('--policy-file', ws.path), 'ERR_FILE_READ', `--policy-file ${ws.path}`);
  });

  it('a policy file with the allow flags', async () => {
    const file = await writePolicy(ws.path, 'fine.json', V1);
    await expectStartupError(
      args('--policy-file', file, '--allow', CLIENT_ID),
      'ERR_CONFIG_INVALID',
      '--policy-file replaces --allow',
    );
  });

  it('an API keys file with a bad line names the file and the line', async () => {
    const policy = await writePolicy(ws.path, 'fine.json', V1);
    const keys = join(ws.path, 'keys.txt');
    await writeFile(keys, `# keys\n${apiKey('good').line}\nsha256:XYZ partner\n`);
    await expectStartupError(
      args('--policy-file', policy, '--api-keys-file', keys),
      'ERR_API_KEYS_INVALID',
      `--api-keys-file ${keys} line 3: `,
    );
  });
});

describe('a start that fails after the policy file was opened', () => {
  it('leaves no watcher behind: a later change of the file reloads nothing', async () => {
    const dir = join(ws.path, 'failed-start');
    await mkdir(dir);
    const file = await writePolicy(dir, 'policy.json', V1);
    const { log, logs } = capturingLogger();
    const config = buildConfig({
      ...identityFlags(),
      listen: '127.0.0.1:0',
      'admin-listen': '127.0.0.1:0',
      'mtls-cert-file': join(ws.path, 'no-such-cert.pem'),
      'policy-file': file,
    });
    await expect(startSidecar(config, log)).rejects.toMatchObject({ code: 'ERR_FILE_READ' });
    // A control that watches the same file: once it has reloaded, a leaked watch would have too.
    const watching = await startTestSidecar({ ...identityFlags(), 'policy-file': file });
    try {
      await writePolicy(dir, 'policy.json', V2);
      await waitForLog(watching.logs, { event: 'file_reloaded', flag: '--policy-file', trigger: 'watch' });
    } finally {
      await watching.close();
    }
    expect(logs.filter((l) => l.event === 'file_reloaded' || l.event === 'reload_failed')).toEqual([]);
  });
});
