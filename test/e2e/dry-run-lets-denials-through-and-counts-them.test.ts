// `--policy-mode dry-run`: what the policy would deny is logged (dry_run) and counted
// (decision="dry_run_deny") but reaches the app, so a new policy can be tried on live traffic.
// Authentication is not policy: a bad certificate or an unknown key is still refused.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { apiKey, decisions, lastAudit, scrapeMetrics, writePolicy } from '../helpers/authz.js';
import { expectRejected, requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { startCli, waitForEvent, fileModeArgs } from '../helpers/process.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const CLIENT_ID = 'spiffe://example.org/ns/prod/sa/client';
const OTHER_ID = 'spiffe://example.org/ns/prod/sa/other';

const POLICY = {
  version: 1,
  rules: [
    { name: 'no-admin', effect: 'deny', path: { prefix: '/admin' } },
    { name: 'client-reads', effect: 'allow', methods: ['GET'], path: { prefix: '/v1' }, callers: { ids: [CLIENT_ID] } },
    {
      name: 'script-reads',
      effect: 'allow',
      methods: ['GET'],
      path: { prefix: '/v1' },
      callers: { api_keys: ['script'] },
    },
    {
      name: 'client-polls',
      effect: 'allow',
      path: { exact: '/poll' },
      callers: { ids: [CLIENT_ID] },
      rate_limit: { requests: 1, per: '1m', burst: 1 },
    },
  ],
};

const ws = useWorkspace();
let ca: CertificateAuthority;
let serving: ServingFiles;
let client: IssuedCertificate;
let other: IssuedCertificate;
let policyFile: string;
let keysFile: string;
const script = apiKey('script');
const stranger = apiKey('stranger');

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: 'example.org' });
  const dir = join(ws.path, 'files');
  await mkdir(dir);
  serving = await writeServingFiles(
    dir,
    await issueSvid(ca, { id: 'spiffe://example.org/ns/prod/sa/server' }),
    ca.certPem,
  );
  [client, other] = await Promise.all([issueSvid(ca, { id: CLIENT_ID }), issueSvid(ca, { id: OTHER_ID })]);
  policyFile = await writePolicy(dir, 'policy.json', POLICY);
  keysFile = join(dir, 'keys.txt');
  await writeFile(keysFile, `${script.line}\n${stranger.line}\n`);
});

function flags() {
  return {
    upstream: ws.app.url,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
    'policy-file': policyFile,
    'api-keys-file': keysFile,
  };
}

describe('dry-run lets denials through and counts them', () => {
  let sidecar: TestSidecar;
  beforeAll(async () => {
    sidecar = await startTestSidecar({ ...flags(), 'policy-mode': 'dry-run' });
  });
  afterAll(() => sidecar.close());

  it('a request the policy would deny reaches the app, logged as a dry-run denial and counted as one', async () => {
    const before = await scrapeMetrics(sidecar.adminAddress().port);
    const unmatched = await requestVia(sidecar.port, other, { path: '/v1/orders' });
    expect(unmatched.status).toBe(200);
    expect(JSON.parse(unmatched.body).headers['x-spiffe-id']).toBe(OTHER_ID);
    expect(await lastAudit(sidecar.logs, 'GET', '/v1/orders')).toMatchObject({
      peer: OTHER_ID,
      auth: 'mtls',
      decision: 'deny',
      reason: 'no_matching_rule',
      dry_run: true,
    });

    const denied = await requestVia(sidecar.port, client, { method: 'DELETE', path: '/admin/users' });
    expect(denied.status).toBe(200);
    expect(JSON.parse(denied.body).url).toBe('/admin/users');
    expect(await lastAudit(sidecar.logs, 'DELETE', '/admin/users')).toMatchObject({
      decision: 'deny',
      rule: 'no-admin',
      reason: 'rule_denied',
      dry_run: true,
    });

    const after = await scrapeMetrics(sidecar.adminAddress().port);
    const delta = (d: 'allow' | 'deny' | 'dry_run_deny', r: string) => decisions(after, d, r) - decisions(before, d, r);
    expect(delta('dry_run_deny', 'no_matching_rule')).toBe(1);
    expect(delta('dry_run_deny', 'rule_denied')).toBe(1);
    expect(delta('deny', 'no_matching_rule')).toBe(0);
    expect(delta('deny', 'rule_denied')).toBe(0);
  });

  it('an allowed request is an ordinary allow, without dry_run', async () => {
    const before = await scrapeMetrics(sidecar.adminAddress().port);
    expect((await requestVia(sidecar.port, client, { path: '/v1/allowed' })).status).toBe(200);
    const audit = await lastAudit(sidecar.logs, 'GET', '/v1/allowed');
    expect(audit).toMatchObject({ decision: 'allow', rule: 'client-reads' });
    expect(audit).not.toHaveProperty('dry_run');
    const after = await scrapeMetrics(sidecar.adminAddress().port);
    expect(decisions(after, 'allow', 'rule_matched') - decisions(before, 'allow', 'rule_matched')).toBe(1);
  });

  it('a rate limit is reported, not enforced', async () => {
    expect((await requestVia(sidecar.port, client, { path: '/poll' })).status).toBe(200);
    const from = sidecar.logs.length;
    const second = await requestVia(sidecar.port, client, { path: '/poll' });
    expect(second.status).toBe(200);
    expect(second.headers['retry-after']).toBeUndefined();
    expect(await lastAudit(sidecar.logs, 'GET', '/poll', from)).toMatchObject({
      decision: 'deny',
      rule: 'client-polls',
      reason: 'rate_limited',
      dry_run: true,
    });
    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    expect(decisions(scrape, 'dry_run_deny', 'rate_limited')).toBe(1);
  });

  it('a known API key the rules do not name passes; authentication failures are still refused', async () => {
    const known = await requestVia(sidecar.port, undefined, { path: '/admin', headers: { 'x-api-key': stranger.key } });
    expect(known.status).toBe(200);
    expect(JSON.parse(known.body).headers['x-api-key-name']).toBe('stranger');
    expect(await lastAudit(sidecar.logs, 'GET', '/admin')).toMatchObject({ auth: 'api-key', dry_run: true });

    const seen = ws.app.seen.length;
    const unknown = await requestVia(sidecar.port, undefined, {
      path: '/v1/x',
      headers: { 'x-api-key': apiKey('script').key },
    });
    expect([unknown.status, JSON.parse(unknown.body).reason]).toEqual([401, 'ERR_API_KEY_UNKNOWN']);
    const none = await requestVia(sidecar.port, undefined, { path: '/v1/x' });
    expect([none.status, JSON.parse(none.body).reason]).toEqual([401, 'ERR_API_KEY_MISSING']);
    const rogue = await issueSvid(await createDevCa({ trustDomain: 'example.org' }), { id: CLIENT_ID });
    await expectRejected(sidecar.port, rogue, { path: '/v1/x' });
    expect(ws.app.seen.length).toBe(seen);
  });
});

describe('enforce mode (the default) with the same policy', () => {
  it('denies and counts decision="deny"', async () => {
    const sidecar = await startTestSidecar(flags());
    try {
      const res = await requestVia(sidecar.port, other, { path: '/v1/orders' });
      expect([res.status, JSON.parse(res.body).reason]).toEqual([403, 'no_matching_rule']);
      const audit = await lastAudit(sidecar.logs, 'GET', '/v1/orders');
      expect(audit).toMatchObject({ decision: 'deny', reason: 'no_matching_rule' });
      expect(audit).not.toHaveProperty('dry_run');
      const scrape = await scrapeMetrics(sidecar.adminAddress().port);
      expect(decisions(scrape, 'deny', 'no_matching_rule')).toBe(1);
      expect(decisions(scrape, 'dry_run_deny', 'no_matching_rule')).toBe(0);
    } finally {
      await sidecar.close();
    }
  });
});

describe('the real process in dry-run', () => {
  it('--policy-mode dry-run from the command line lets the denial through and exports the count', async () => {
    const cli = startCli(fileModeArgs(ws.app.url, serving, '--policy-file', policyFile, '--policy-mode', 'dry-run'));
    try {
      const started = await waitForEvent(cli, 'started');
      const port = (started.listen as { port: number }).port;
      expect((await requestVia(port, other, { path: '/admin/cli' })).status).toBe(200);
      const audit = await waitForEvent(cli, 'authz');
      expect(audit).toMatchObject({ path: '/admin/cli', decision: 'deny', rule: 'no-admin', dry_run: true });
      const scrape = await scrapeMetrics((started.admin as { port: number }).port);
      expect(decisions(scrape, 'dry_run_deny', 'rule_denied')).toBe(1);
    } finally {
      cli.child.kill('SIGTERM');
      await cli.exited;
    }
  });
});
