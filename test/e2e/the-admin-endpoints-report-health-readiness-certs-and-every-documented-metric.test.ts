// The admin listener: liveness, readiness (and what flips it), /certs, and /metrics exporting exactly the
// metric names the README documents, with bounded labels.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejected, requestVia } from '../helpers/client.js';
import { freePort } from '../helpers/free-port.js';
import { issueSvid, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startCli, waitForEvent } from '../helpers/process.js';
import { type Scenario, SERVER_ID, startScenario } from '../helpers/scenario.js';
import { startTestSidecar } from '../helpers/sidecar.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';
import { documentedMetrics } from '../helpers/readme.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s.close());

async function admin(port: number, path: string, method = 'GET') {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  const text = await res.text();
  return { status: res.status, type: res.headers.get('content-type'), text };
}

describe('the admin endpoints report health, readiness, certs and every documented metric', () => {
  it('/healthz, /readyz and /certs', async () => {
    const port = s.sidecar.adminAddress().port;
    expect(await admin(port, '/healthz')).toMatchObject({ status: 200, text: '{"alive":true}' });
    expect(await admin(port, '/readyz')).toMatchObject({ status: 200, text: '{"ready":true}' });
    const certs = JSON.parse((await admin(port, '/certs')).text);
    const leaf = s.sidecar.identity.current().svid.chain[0];
    expect(certs).toMatchObject({
      source: 'files',
      svid: {
        spiffe_id: SERVER_ID,
        serial: leaf.serialNumber,
        not_after: leaf.notAfter.toISOString(),
        chain_length: 1,
      },
    });
    expect(certs.bundles).toEqual([
      { trust_domain: 'example.org', authorities: 1, sequence: null },
      { trust_domain: 'partner.org', authorities: 1, sequence: null },
    ]);
    expect((await admin(port, '/readyz', 'POST')).status).toBe(405);
    expect((await admin(port, '/nope')).status).toBe(404);
  });

  it('/metrics exports exactly the documented spiffe_sidecar_ metrics, with bounded labels', async () => {
    await requestVia(s.sidecar.port, s.allowed);
    await requestVia(s.sidecar.port, s.denied);
    await expectRejected(s.sidecar.port, undefined);
    const scrape = await admin(s.sidecar.adminAddress().port, '/metrics');
    expect(scrape.status).toBe(200);
    expect(scrape.type).toContain('text/plain');
    const exported = [...scrape.text.matchAll(/^# TYPE (spiffe_sidecar_\S+) /gm)].map((m) => m[1]).sort();
    // The rate-limit store's metrics exist only with --rate-limit-store (a gauge of 0 would read as "down"):
    // the redis end-to-end test checks them. The API key gauges exist only with --api-keys-file: the API key
    // lifecycle end-to-end test checks them.
    const flagOnly = (m: string) =>
      m.startsWith('spiffe_sidecar_rate_limit_store_') || m.startsWith('spiffe_sidecar_api_keys');
    expect(exported).toEqual([...documentedMetrics()].filter((m) => !flagOnly(m)).sort());
    expect(scrape.text).toMatch(
      /^spiffe_sidecar_tls_handshakes_total\{result="failure",reason="ERR_NO_CLIENT_CERT"\} 1$/m,
    );
    expect(scrape.text).toMatch(/^spiffe_sidecar_tls_handshakes_total\{result="success",reason="verified"\} 2$/m);
    expect(scrape.text).toMatch(
      /^spiffe_sidecar_authz_decisions_total\{decision="deny",reason="no_matching_rule",auth="mtls"\} 1$/m,
    );
    expect(scrape.text).toMatch(/^spiffe_sidecar_requests_total\{status_class="2xx",auth="mtls"\} 1$/m);
    expect(scrape.text).toMatch(/^spiffe_sidecar_requests_total\{status_class="4xx",auth="mtls"\} 1$/m);
    expect(scrape.text).toMatch(/^spiffe_sidecar_ready 1$/m);
    expect(scrape.text).toMatch(/^spiffe_sidecar_identity_reloads_total\{source="file",result="failed"\} 0$/m);
    // Bounded labels: no SPIFFE ID, path or rule ever becomes a label value.
    for (const line of scrape.text.split('\n').filter((l) => l.startsWith('spiffe_sidecar_'))) {
      expect(line).not.toMatch(/spiffe:\/\/|\/secret/);
    }
  });

  it('readiness flips with SVID expiry and back with a fresh SVID', async () => {
    const dir = await tempDir();
    try {
      const short = await issueSvid(s.caA, { id: SERVER_ID, lifetimeMs: 2500 });
      const files = await writeServingFiles(dir.path, short, s.caA.certPem);
      const sidecar = await startTestSidecar({
        upstream: s.app.url,
        'mtls-cert-file': files.certFile,
        'mtls-key-file': files.keyFile,
        'mtls-ca-file': files.caFile,
        'allow-any': true,
      });
      try {
        const port = sidecar.adminAddress().port;
        expect((await admin(port, '/readyz')).status).toBe(200);
        await expect
          .poll(async () => (await admin(port, '/readyz')).text, { timeout: 6000 })
          .toBe('{"ready":false,"reason":"svid_expired"}');
        expect((await admin(port, '/readyz')).status).toBe(503);
        expect((await admin(port, '/healthz')).status).toBe(200);
        const fresh = await issueSvid(s.caA, { id: SERVER_ID });
        await writeFile(files.certFile, fresh.chainPem);
        await writeFile(files.keyFile, fresh.keyPem);
        await sidecar.identity.reload('test');
        expect((await admin(port, '/readyz')).status).toBe(200);
      } finally {
        await sidecar.close();
      }
    } finally {
      await dir.remove();
    }
  });

  it('--ready-requires-upstream: not ready while the app does not accept connections', async () => {
    const down = await freePort();
    const sidecar = await startTestSidecar({
      upstream: `http://127.0.0.1:${down}`,
      'mtls-cert-file': s.files.certFile,
      'mtls-key-file': s.files.keyFile,
      'mtls-ca-file': s.files.caFile,
      'allow-any': true,
      'ready-requires-upstream': true,
    });
    try {
      const res = await admin(sidecar.adminAddress().port, '/readyz');
      expect(res).toMatchObject({ status: 503, text: '{"ready":false,"reason":"upstream_unreachable"}' });
    } finally {
      await sidecar.close();
    }
  });

  it('SPIRE mode: alive but not ready while waiting for the agent, ready once the SVID arrives', async () => {
    const dir = await tempDir();
    const adminPort = await freePort();
    const socketPath = join(dir.path, 'agent.sock');
    const cli = startCli(['--listen', '127.0.0.1:0', '--upstream', s.app.url, '--allow-any'], {
      SPIFFE_ENDPOINT_SOCKET: `unix://${socketPath}`,
      SPIFFE_SIDECAR_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    });
    let api: TestWorkloadApi | undefined;
    try {
      await waitForEvent(cli, 'waiting_for_identity');
      expect((await admin(adminPort, '/healthz')).status).toBe(200);
      expect(await admin(adminPort, '/readyz')).toMatchObject({
        status: 503,
        text: '{"ready":false,"reason":"waiting_for_svid"}',
      });
      expect(JSON.parse((await admin(adminPort, '/certs')).text)).toEqual({
        source: 'workload-api',
        svid: null,
        bundles: [],
      });
      api = await TestWorkloadApi.start(socketPath);
      api.setX509({
        svids: [{ spiffeId: SERVER_ID, svid: await issueSvid(s.caA, { id: SERVER_ID }), bundlePem: s.caA.certPem }],
      });
      await waitForEvent(cli, 'started', 15_000);
      expect((await admin(adminPort, '/readyz')).status).toBe(200);
      expect((await admin(adminPort, '/metrics')).text).toMatch(/^spiffe_sidecar_workload_api_connected 1$/m);
    } finally {
      cli.child.kill('SIGTERM');
      await cli.exited;
      await api?.close();
      await dir.remove();
    }
  });
});
