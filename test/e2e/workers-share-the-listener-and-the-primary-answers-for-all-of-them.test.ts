// --workers 2 with real processes: both workers serve one port, the primary's admin endpoints speak for
// all of them (readiness, summed metrics, certs), a killed worker is replaced, a client that tries to
// resume is always admitted, SIGTERM stops everything with status 0, and a worker that cannot start stops the
// sidecar with status 1.
import { request as httpsRequest, Agent } from 'node:https';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { type ClientCert, requestVia } from '../helpers/client.js';
import { createDevCa, issueIntermediateCa, issueSvid } from '../../src/certs/dev-ca.js';
import { writeServingFiles } from '../helpers/pki.js';
import { runCli, startCli, waitForEvent } from '../helpers/process.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();

async function admin(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

function metric(text: string, line: string): number {
  const found = text.split('\n').find((l) => l.startsWith(line));
  return found ? Number(found.slice(line.length).trim()) : 0;
}

/** A request over a connection that resumes the agent's cached TLS session when it can. */
function resumingRequest(port: number, cert: ClientCert, agent: Agent): Promise<{ status: number; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path: '/', cert: cert.chainPem, key: cert.keyPem, rejectUnauthorized: false, agent },
      (res) => {
        const reused = (res.socket as TLSSocket).isSessionReused();
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('workers share the listener and the primary answers for all of them', () => {
  it('serves on both workers, reports for all, replaces a dead worker, stops on SIGTERM', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    await mkdir(join(ws.path, 'server'));
    const files = await writeServingFiles(
      join(ws.path, 'server'),
      await issueSvid(ca, { id: 'spiffe://example.org/server' }),
      ca.certPem,
    );
    const client = await issueSvid(ca, { id: 'spiffe://example.org/client' });
    const resumingClient = await issueSvid(await issueIntermediateCa(ca), { id: 'spiffe://example.org/client' });
    const sidecar = startCli(
      [
        '--workers',
        '2',
        '--listen',
        '127.0.0.1:0',
        '--upstream',
        ws.app.url,
        '--mtls-cert-file',
        files.certFile,
        '--mtls-key-file',
        files.keyFile,
        '--mtls-ca-file',
        files.caFile,
        '--allow',
        'spiffe://example.org/client',
      ],
      { SPIFFE_SIDECAR_ADMIN_LISTEN: '127.0.0.1:0' },
    );
    try {
      const started = await waitForEvent(sidecar, 'workers_started', 20_000);
      const adminPort = (started.admin as { port: number }).port;
      // Both workers logged 'started' on the same port, each from its own process.
      const startedLines = sidecar
        .stdout()
        .split('\n')
        .filter((l) => l.includes('"event":"started"'))
        .map((l) => JSON.parse(l) as { pid: number; listen: { port: number } });
      expect(startedLines).toHaveLength(2);
      expect(new Set(startedLines.map((l) => l.pid)).size).toBe(2);
      const port = startedLines[0].listen.port;
      expect(startedLines[1].listen.port).toBe(port);

      const results = await Promise.all(
        Array.from({ length: 40 }, () => requestVia(port, client, { headers: { 'x-spiffe-id': 'spiffe://evil/x' } })),
      );
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect(results.every((r) => JSON.parse(r.body).headers['x-spiffe-id'] === 'spiffe://example.org/client')).toBe(
        true,
      );
      // The audit lines come from both workers: the kernel spread the connections. Each is written when
      // its exchange is over, so the 40 lines may still be on their way.
      const auditLines = () =>
        sidecar
          .stdout()
          .split('\n')
          .filter((l) => l.includes('"event":"authz"'))
          .map((l) => JSON.parse(l) as { pid: number });
      await expect.poll(() => auditLines().length, { timeout: 5000 }).toBe(40);
      expect(new Set(auditLines().map((l) => l.pid)).size).toBe(2);

      expect(await admin(adminPort, '/readyz')).toEqual({ status: 200, body: '{"ready":true}' });
      const metrics = (await admin(adminPort, '/metrics')).body;
      expect(
        metric(metrics, 'spiffe_sidecar_authz_decisions_total{decision="allow",reason="rule_matched",auth="mtls"}'),
      ).toBe(40);
      // Facts of one process are not summed: ready is 1 (not 2), and the expiry is the SVID's, within the hour it
      // was issued for (a sum of two would read as a date decades away).
      expect(metric(metrics, 'spiffe_sidecar_ready')).toBe(1);
      const expiry = metric(metrics, 'spiffe_sidecar_svid_expiry_timestamp_seconds');
      expect(expiry).toBeGreaterThan(Date.now() / 1000);
      expect(expiry).toBeLessThan(Date.now() / 1000 + 2 * 3600);
      const certs = JSON.parse((await admin(adminPort, '/certs')).body) as { svid: { spiffe_id: string } };
      expect(certs.svid.spiffe_id).toBe('spiffe://example.org/server');

      // A client that tries to resume (an SVID from an intermediate) is always admitted: workers do full
      // handshakes only, since a resumed session could reach a worker that never saw its full chain.
      const agent = new Agent({ keepAlive: false, maxCachedSessions: 4 });
      const resumed = [];
      for (let i = 0; i < 12; i++) resumed.push(await resumingRequest(port, resumingClient, agent));
      agent.destroy();
      expect(resumed.every((r) => r.status === 200)).toBe(true);
      expect(resumed.some((r) => r.reused)).toBe(false);

      // Kill one worker: it is replaced, and the sidecar is ready again with two workers.
      const victim = startedLines[0].pid;
      process.kill(victim, 'SIGKILL');
      await waitForEvent(sidecar, 'worker_exited', 10_000);
      const deadline = Date.now() + 15_000;
      let ready = await admin(adminPort, '/readyz');
      while (Date.now() < deadline) {
        const starts = sidecar
          .stdout()
          .split('\n')
          .filter((l) => l.includes('"event":"started"')).length;
        ready = await admin(adminPort, '/readyz');
        if (starts === 3 && ready.status === 200) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(ready.status).toBe(200);
      expect((await requestVia(port, client)).status).toBe(200);
    } finally {
      sidecar.child.kill('SIGTERM');
    }
    const finished = await sidecar.exited;
    expect(finished.code, finished.stderr).toBe(0);
  }, 60_000);

  it('stops with status 1 when a worker cannot start (a missing certificate file)', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    await mkdir(join(ws.path, 'broken'));
    const files = await writeServingFiles(
      join(ws.path, 'broken'),
      await issueSvid(ca, { id: 'spiffe://example.org/server' }),
      ca.certPem,
    );
    const finished = await runCli(
      [
        '--workers',
        '2',
        '--listen',
        '127.0.0.1:0',
        '--upstream',
        ws.app.url,
        '--mtls-cert-file',
        join(ws.path, 'broken', 'missing.crt'),
        '--mtls-key-file',
        files.keyFile,
        '--mtls-ca-file',
        files.caFile,
        '--allow-any',
      ],
      {},
      20_000,
    );
    expect(finished.code).toBe(1);
    expect(finished.stderr).toContain('--mtls-cert-file');
  }, 30_000);

  it('refuses a bad --workers value naming the flag', async () => {
    for (const value of ['0', '65', 'two', '1.5']) {
      const finished = await runCli(['--workers', value, '--upstream', ws.app.url, '--allow-any']);
      expect(finished.code).toBe(1);
      expect(finished.stderr).toContain(`--workers "${value}"`);
    }
  });
});
