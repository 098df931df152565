// Issue 21. What a reload did, and what fetching keys did, can be seen without guessing: a SIGHUP that finds
// every file unchanged says so, file by file (`file_unchanged`), and its `reload_done` line lists what
// changed, what did not and what failed; a policy, API keys or JWT key file that fails to reload is counted
// (spiffe_sidecar_file_reloads_total) while the last good one stays in force; JWKS fetches and Kubernetes
// TokenReviews are counted by result and timed (histograms). Real sockets, real processes, real issuers.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { apiKey, sample, scrapeMetrics, waitForLog, writePolicy } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { type KubeApi, startKubeApi } from '../helpers/kube-api.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { createDevCa, issueSvid, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { fileModeArgs, logLinesSince, type Running, startCli, waitForEvent } from '../helpers/process.js';
import { type ScriptableIssuer, startScriptableIssuer } from '../helpers/scriptable-oidc-issuer.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const SERVER_ID = 'spiffe://example.org/ns/prod/sa/orders';
const CLIENT_ID = 'spiffe://example.org/ns/prod/sa/client';
const INFO = 'info';
const DEBUG = 'debug';

const ws = useWorkspace();
let serving: ServingFiles;
let client: IssuedCertificate;

/** The client may read /v1; with `admin`, /admin too. */
function policy(admin: boolean) {
  return {
    version: 1,
    rules: [
      ...(admin ? [{ name: 'client-administers', effect: 'allow', path: { prefix: '/admin' } }] : []),
      {
        name: 'client-reads',
        effect: 'allow',
        methods: ['GET'],
        path: { prefix: '/v1' },
        callers: { ids: [CLIENT_ID] },
      },
      { name: 'partner-reads', effect: 'allow', path: { prefix: '/v1' }, callers: { api_keys: ['partner'] } },
    ],
  };
}
const BROKEN_POLICY = '{"version": 1, "rules": [';
const partner = apiKey('partner');

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  await mkdir(join(ws.path, 'certs'));
  serving = await writeServingFiles(join(ws.path, 'certs'), await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  client = await issueSvid(ca, { id: CLIENT_ID });
});

/** The value of the series written exactly as `series` (name and labels in prom-client's order); 0 if absent. */
function value(scrape: string, series: string): number {
  const line = scrape.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

function fileReloads(scrape: string, file: string) {
  const n = (result: string) => sample(scrape, 'spiffe_sidecar_file_reloads_total', { file, result });
  return { updated: n('updated'), unchanged: n('unchanged'), failed: n('failed') };
}

async function status(port: number, path: string, headers?: Record<string, string>) {
  return (await requestVia(port, headers ? undefined : client, { path, headers })).status;
}

describe('SIGHUP says what each file did, and the rule files are counted by result', () => {
  let sidecar: TestSidecar;
  let policyFile: string;
  let keysFile: string;
  const IDENTITY_FLAGS = ['--mtls-cert-file', '--mtls-key-file', '--mtls-ca-file'];

  beforeAll(async () => {
    const dir = join(ws.path, 'in-process');
    await mkdir(dir);
    policyFile = await writePolicy(dir, 'policy.json', policy(false));
    keysFile = join(dir, 'api-keys.txt');
    await writeFile(keysFile, `${partner.line}\n`);
    sidecar = await startTestSidecar({
      upstream: ws.app.url,
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      'policy-file': policyFile,
      'api-keys-file': keysFile,
      watch: false,
    });
  });
  afterAll(() => sidecar?.close());

  /** Reloads as SIGHUP does and returns the `reload_done` line and the lines logged on the way. */
  async function sighup() {
    const from = sidecar.logs.length;
    await sidecar.reload('SIGHUP');
    const done = await waitForLog(sidecar.logs, { event: 'reload_done', trigger: 'SIGHUP' }, from);
    return { done, lines: sidecar.logs.slice(from) };
  }

  it('nothing changed: one file_unchanged line per file, at info, and reload_done lists them as unchanged', async () => {
    const before = fileReloads(await scrapeMetrics(sidecar.adminAddress().port), 'policy');
    expect(before).toEqual({ updated: 0, unchanged: 0, failed: 0 });

    const { done, lines } = await sighup();
    const unchanged = ['--policy-file', '--api-keys-file', ...IDENTITY_FLAGS];
    expect(done).toMatchObject({ level: INFO, files: unchanged, changed: [], unchanged, failed: [] });
    expect(done.msg).toContain('unchanged: --policy-file, --api-keys-file, --mtls-cert-file');
    const said = lines
      .filter((l) => l.event === 'file_unchanged')
      .map((l) => ({ level: l.level, trigger: l.trigger, flag: l.flag, file: l.file }));
    expect(said).toEqual(
      [
        ['--policy-file', policyFile],
        ['--api-keys-file', keysFile],
        ['--mtls-cert-file', serving.certFile],
        ['--mtls-key-file', serving.keyFile],
        ['--mtls-ca-file', serving.caFile],
      ].map(([flag, file]) => ({ level: INFO, trigger: 'SIGHUP', flag, file })),
    );
    expect(
      lines.filter((l) => ['file_reloaded', 'identity_updated', 'reload_failed'].includes(l.event as string)),
    ).toEqual([]);

    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    expect(fileReloads(scrape, 'policy')).toEqual({ updated: 0, unchanged: 1, failed: 0 });
    expect(fileReloads(scrape, 'api_keys')).toEqual({ updated: 0, unchanged: 1, failed: 0 });
    expect(sample(scrape, 'spiffe_sidecar_identity_reloads_total', { source: 'file', result: 'unchanged' })).toBe(1);
  });

  it('a changed policy is listed as changed, the other files as unchanged', async () => {
    expect(await status(sidecar.port, '/admin')).toBe(403);
    await writePolicy(join(ws.path, 'in-process'), 'policy.json', policy(true));
    const { done, lines } = await sighup();
    expect(done).toMatchObject({ changed: ['--policy-file'], unchanged: ['--api-keys-file', ...IDENTITY_FLAGS] });
    expect(done.failed).toEqual([]);
    expect(lines.find((l) => l.event === 'file_reloaded')).toMatchObject({ flag: '--policy-file', trigger: 'SIGHUP' });
    expect(lines.some((l) => l.event === 'file_unchanged' && l.flag === '--policy-file')).toBe(false);
    expect(await status(sidecar.port, '/admin')).toBe(200);
  });

  it('a broken policy and API keys file are counted as failed in /metrics; the last good ones stay', async () => {
    const before = await scrapeMetrics(sidecar.adminAddress().port);
    await writeFile(policyFile, BROKEN_POLICY);
    await writeFile(keysFile, 'sha256:not-a-digest partner\n');
    const { done, lines } = await sighup();
    expect(done).toMatchObject({
      changed: [],
      unchanged: IDENTITY_FLAGS,
      failed: ['--policy-file', '--api-keys-file'],
    });
    expect(done.msg).toContain('failed, the last good kept: --policy-file, --api-keys-file');
    expect(lines.filter((l) => l.event === 'reload_failed').map((l) => l.flag)).toEqual([
      '--policy-file',
      '--api-keys-file',
    ]);
    // The policy with /admin open, and the partner's key, are still in force.
    expect(await status(sidecar.port, '/admin')).toBe(200);
    expect(await status(sidecar.port, '/v1/orders', { 'x-api-key': partner.key })).toBe(200);

    const after = await scrapeMetrics(sidecar.adminAddress().port);
    expect(fileReloads(after, 'policy')).toEqual({
      updated: fileReloads(before, 'policy').updated,
      unchanged: fileReloads(before, 'policy').unchanged,
      failed: 1,
    });
    expect(fileReloads(after, 'api_keys')).toMatchObject({ failed: 1 });
    // Only configured files have series; labels are bounded names, never a path.
    const labels = after.split('\n').filter((l) => l.startsWith('spiffe_sidecar_file_reloads_total{'));
    expect(labels).toHaveLength(6);
    expect(labels.join('\n')).not.toContain(ws.path);
  });

  it('a watch that finds a file unchanged logs it at debug only', async () => {
    const dir = join(ws.path, 'watching');
    await mkdir(dir);
    const file = await writePolicy(dir, 'policy.json', policy(false));
    const watching = await startTestSidecar({
      upstream: ws.app.url,
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      'policy-file': file,
    });
    try {
      // Once the watcher is ready, the file is read again in case it changed in between: unchanged.
      const line = await waitForLog(watching.logs, { event: 'file_unchanged', flag: '--policy-file' });
      expect(line).toMatchObject({ level: DEBUG, trigger: 'watch', file });
    } finally {
      await watching.close();
    }
  });
});

describe('the real process: SIGHUP with unchanged files, then a broken policy counted in a real scrape', () => {
  let cli: Running | undefined;
  afterAll(async () => {
    cli?.child.kill('SIGTERM');
    await cli?.exited;
  });

  async function sighup(): Promise<{ done: Record<string, unknown>; lines: Record<string, unknown>[] }> {
    const from = cli!.stdout().length;
    cli!.child.kill('SIGHUP');
    const done = () => logLinesSince(cli!, from).find((l) => l.event === 'reload_done');
    await expect.poll(done, { timeout: 10_000 }).toBeDefined();
    return { done: done()!, lines: logLinesSince(cli!, from) };
  }

  it('logs each unchanged file and counts the failed reload; the last good policy stays', async () => {
    const dir = join(ws.path, 'process');
    await mkdir(dir);
    const file = await writePolicy(dir, 'policy.json', policy(true));
    cli = startCli(fileModeArgs(ws.app.url, serving, '--policy-file', file, '--no-watch'));
    const started = await waitForEvent(cli, 'started', 15_000);
    const port = (started.listen as { port: number }).port;
    const adminPort = (started.admin as { port: number }).port;

    const quiet = await sighup();
    expect(quiet.done).toMatchObject({
      trigger: 'SIGHUP',
      changed: [],
      unchanged: ['--policy-file', '--mtls-cert-file', '--mtls-key-file', '--mtls-ca-file'],
      failed: [],
    });
    expect(quiet.lines.filter((l) => l.event === 'file_unchanged').map((l) => [l.flag, l.level])).toEqual([
      ['--policy-file', INFO],
      ['--mtls-cert-file', INFO],
      ['--mtls-key-file', INFO],
      ['--mtls-ca-file', INFO],
    ]);

    await writeFile(file, BROKEN_POLICY);
    const broken = await sighup();
    expect(broken.done).toMatchObject({ failed: ['--policy-file'] });
    expect(broken.lines.find((l) => l.event === 'reload_failed')).toMatchObject({
      flag: '--policy-file',
      reason: 'ERR_POLICY_INVALID',
    });
    expect(await status(port, '/admin')).toBe(200);
    expect(fileReloads(await scrapeMetrics(adminPort), 'policy')).toEqual({ updated: 0, unchanged: 1, failed: 1 });
  });
});

describe('JWT key files: SIGHUP says what each did, and they are counted like the rule files', () => {
  let sidecar: TestSidecar;
  let bundleFile: string;
  let jwksFile: string;

  async function jwks(): Promise<string> {
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    return JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', use: 'sig' }] });
  }

  beforeAll(async () => {
    const dir = join(ws.path, 'jwt-files');
    await mkdir(dir);
    bundleFile = join(dir, 'example.org.json');
    jwksFile = join(dir, 'ci.json');
    await writeFile(bundleFile, (await jwks()).replace('"sig"', '"jwt-svid"'));
    await writeFile(jwksFile, await jwks());
    sidecar = await startTestSidecar({
      upstream: ws.app.url,
      'auth-mode': 'jwt',
      'jwt-audience': ['orders'],
      'jwt-bundle-file': [`example.org=${bundleFile}`],
      'jwt-issuer': ['ci=https://ci.example'],
      'jwt-jwks': [`ci=${jwksFile}`],
      'allow-any': true,
      watch: false,
    });
  });
  afterAll(() => sidecar?.close());

  it('unchanged, then a broken --jwt-jwks file: logged per file and counted as jwt_jwks failed', async () => {
    let from = sidecar.logs.length;
    await sidecar.reload('SIGHUP');
    let done = await waitForLog(sidecar.logs, { event: 'reload_done' }, from);
    expect(done).toMatchObject({ changed: [], unchanged: ['--jwt-bundle-file', '--jwt-jwks'], failed: [] });
    expect(
      sidecar.logs
        .slice(from)
        .filter((l) => l.event === 'file_unchanged')
        .map((l) => [l.flag, l.file, l.level]),
    ).toEqual(
      expect.arrayContaining([
        ['--jwt-bundle-file', bundleFile, INFO],
        ['--jwt-jwks', jwksFile, INFO],
      ]),
    );

    await writeFile(jwksFile, '{"keys": [');
    from = sidecar.logs.length;
    await sidecar.reload('SIGHUP');
    done = await waitForLog(sidecar.logs, { event: 'reload_done' }, from);
    expect(done).toMatchObject({ changed: [], unchanged: ['--jwt-bundle-file'], failed: ['--jwt-jwks'] });
    const failed = await waitForLog(sidecar.logs, { event: 'reload_failed', flag: '--jwt-jwks' }, from);
    expect(failed).toMatchObject({ file: jwksFile, trigger: 'SIGHUP' });
    expect(failed.msg).toContain(`--jwt-jwks ci=${jwksFile}`);

    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    expect(fileReloads(scrape, 'jwt_bundle')).toEqual({ updated: 0, unchanged: 2, failed: 0 });
    expect(fileReloads(scrape, 'jwt_jwks')).toEqual({ updated: 0, unchanged: 1, failed: 1 });
  });
});

describe('JWKS fetches are counted by result and timed, per issuer name', () => {
  let issuer: ScriptableIssuer;
  let sidecar: TestSidecar;

  beforeAll(async () => {
    issuer = await startScriptableIssuer();
    const ca = join(ws.path, 'scripted-issuer-ca.pem');
    await writeFile(ca, issuer.caPem);
    sidecar = await startTestSidecar({
      upstream: ws.app.url,
      'auth-mode': 'jwt',
      'jwt-audience': ['orders'],
      'jwt-issuer': [`ci=${issuer.url}`],
      'jwt-ca-file': ca,
      'allow-issuer': ['ci'],
      'allow-any': true,
    });
  });
  afterAll(async () => {
    await sidecar?.close();
    await issuer?.close();
  });

  async function fetches() {
    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    const n = (result: string) => sample(scrape, 'spiffe_sidecar_jwks_fetches_total', { issuer: 'ci', result });
    return {
      updated: n('updated'),
      unchanged: n('unchanged'),
      failed: n('failed'),
      timed: value(scrape, 'spiffe_sidecar_jwks_fetch_duration_seconds_count{issuer="ci"}'),
      inf: value(scrape, 'spiffe_sidecar_jwks_fetch_duration_seconds_bucket{le="+Inf",issuer="ci"}'),
      seconds: value(scrape, 'spiffe_sidecar_jwks_fetch_duration_seconds_sum{issuer="ci"}'),
      empty: sample(scrape, 'spiffe_sidecar_jwks_fetch_failures_total', { issuer: 'ci', reason: 'empty' }),
    };
  }

  async function call(token: string): Promise<number> {
    return (await fetch(`http://127.0.0.1:${sidecar.port}/`, { headers: { authorization: `Bearer ${token}` } })).status;
  }

  it('the first fetch (before the metrics were loaded) is counted; all results start at 0', async () => {
    expect(await fetches()).toMatchObject({ updated: 1, unchanged: 0, failed: 0, timed: 1, inf: 1, empty: 0 });
    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    expect(scrape).toMatch(/^spiffe_sidecar_jwks_fetches_total\{issuer="ci",result="failed"\} 0$/m);
  });

  it('a failing issuer is counted as failed (and by reason, as before); the same keys again as unchanged', async () => {
    issuer.serve({ keys: [] });
    const failedFetch = issuer.nextFetch();
    // A kid the sidecar does not know makes it refetch at once.
    expect(await call(await issuer.sign({ sub: 'pipeline' }, { kid: 'rotated-maybe' }))).toBe(401);
    await failedFetch;
    await expect.poll(async () => (await fetches()).failed, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);

    // The failed fetch is retried soon (backoff); this time the issuer answers the keys it had.
    issuer.serve(undefined);
    await expect.poll(async () => (await fetches()).unchanged, { timeout: 20_000 }).toBeGreaterThanOrEqual(1);
    expect(await call(await issuer.sign({ sub: 'pipeline' }))).toBe(200);

    const n = await fetches();
    expect(n.updated).toBe(1);
    expect(n.empty).toBe(n.failed);
    expect(n.timed).toBe(n.updated + n.unchanged + n.failed);
    expect(n.inf).toBe(n.timed);
    expect(n.seconds).toBeGreaterThan(0);
  });
});

describe('Kubernetes TokenReviews are counted by result and timed; cached answers are not reviews', () => {
  let oidc: OidcIssuer;
  let kube: KubeApi;
  let sidecar: TestSidecar;
  const subject = 'system:serviceaccount:agents:worker';

  beforeAll(async () => {
    oidc = await startOidcIssuer();
    kube = await startKubeApi();
    const ca = join(ws.path, 'kube-ca.pem');
    await writeFile(ca, oidc.caPem + kube.caPem);
    const tokenFile = join(ws.path, 'kube-token');
    await writeFile(tokenFile, `${kube.callerToken}\n`);
    sidecar = await startTestSidecar({
      upstream: ws.app.url,
      'auth-mode': 'jwt',
      'jwt-audience': ['orders'],
      'jwt-issuer': [`k8s=${oidc.url}`],
      'jwt-ca-file': ca,
      allow: ['spiffe://cluster.local/ns/agents/sa/*'],
      'k8s-token-review': true,
      'k8s-api-server': kube.url,
      'k8s-token-file': tokenFile,
      'k8s-token-review-interval': '10m',
    });
  });
  afterAll(async () => {
    await sidecar?.close();
    await kube?.close();
    await oidc?.close();
  });

  async function reviews() {
    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    const n = (result: string) => sample(scrape, 'spiffe_sidecar_token_reviews_total', { result });
    return {
      authenticated: n('authenticated'),
      rejected: n('rejected'),
      error: n('error'),
      cacheHits: value(scrape, 'spiffe_sidecar_token_review_cache_hits_total'),
      timed: value(scrape, 'spiffe_sidecar_token_review_duration_seconds_count'),
      seconds: value(scrape, 'spiffe_sidecar_token_review_duration_seconds_sum'),
    };
  }

  async function call(token: string): Promise<number> {
    return (await fetch(`http://127.0.0.1:${sidecar.port}/`, { headers: { authorization: `Bearer ${token}` } })).status;
  }

  it('authenticated, cached, rejected and error reviews each land in their series', async () => {
    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    for (const result of ['authenticated', 'rejected', 'error']) {
      expect(scrape).toContain(`spiffe_sidecar_token_reviews_total{result="${result}"} 0`);
    }

    const live = await oidc.sign({ sub: subject });
    kube.live.set(live, subject);
    expect(await call(live)).toBe(200);
    expect(await call(live)).toBe(200);
    expect(kube.reviews).toBe(1);
    expect(await reviews()).toMatchObject({ authenticated: 1, rejected: 0, error: 0, cacheHits: 1, timed: 1 });

    expect(await call(await oidc.sign({ sub: 'system:serviceaccount:agents:ghost' }))).toBe(401);
    expect(await reviews()).toMatchObject({ authenticated: 1, rejected: 1, error: 0, timed: 2 });

    kube.up = false;
    try {
      const during = await oidc.sign({ sub: subject, jti: 'during-outage' });
      kube.live.set(during, subject);
      expect(await call(during)).toBe(503);
    } finally {
      kube.up = true;
    }
    const n = await reviews();
    expect(n).toMatchObject({ authenticated: 1, rejected: 1, error: 1, cacheHits: 1, timed: 3 });
    expect(n.seconds).toBeGreaterThan(0);
  });
});
