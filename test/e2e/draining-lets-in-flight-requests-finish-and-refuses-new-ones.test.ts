// Graceful shutdown: readiness goes false, the listener stops accepting, in-flight requests finish, and
// what outlives --drain-timeout is cut.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejected, requestVia } from '../helpers/client.js';
import { startCli, waitForEvent } from '../helpers/process.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';
import { startTestSidecar } from '../helpers/sidecar.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s.close());

function sidecarFlags(extra: Record<string, unknown> = {}) {
  return {
    upstream: s.app.url,
    'mtls-cert-file': s.files.certFile,
    'mtls-key-file': s.files.keyFile,
    'mtls-ca-file': s.files.caFile,
    allow: [ALLOWED_ID],
    ...extra,
  };
}

describe('draining lets in-flight requests finish and refuses new ones', () => {
  it('finishes a slow request, reports not ready, refuses new connections', async () => {
    const sidecar = await startTestSidecar(sidecarFlags({ 'drain-timeout': '10s' }));
    const adminPort = sidecar.adminAddress().port;
    const slow = requestVia(sidecar.port, s.allowed, { path: '/slow?ms=1500' });
    await expect.poll(() => s.app.seen.some((r) => r.url === '/slow?ms=1500')).toBe(true);
    const stopped = sidecar.stop();
    await expect.poll(async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(503);
    expect(await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()).toEqual({
      ready: false,
      reason: 'draining',
    });
    const scrape = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(scrape).toMatch(/^spiffe_sidecar_ready 0$/m);
    const refused = await expectRejected(sidecar.port, s.allowed);
    expect(refused.code).toBe('ECONNREFUSED');
    const res = await slow;
    expect(res.status).toBe(200);
    expect(res.headers.connection).toBe('close');
    await stopped;
    expect(sidecar.logs.some((l) => l.event === 'draining')).toBe(true);
  });

  it('cuts what outlives --drain-timeout', async () => {
    const sidecar = await startTestSidecar(sidecarFlags({ 'drain-timeout': '300ms' }));
    const slow = requestVia(sidecar.port, s.allowed, { path: '/slow?ms=5000' }).then(
      () => 'answered',
      () => 'cut',
    );
    await expect.poll(() => s.app.seen.some((r) => r.url === '/slow?ms=5000')).toBe(true);
    const started = Date.now();
    await sidecar.stop();
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await slow).toBe('cut');
  });

  it('SIGTERM on the real process drains, then exits 0', async () => {
    const flags = sidecarFlags();
    const cli = startCli([
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      flags.upstream,
      '--mtls-cert-file',
      flags['mtls-cert-file'],
      '--mtls-key-file',
      flags['mtls-key-file'],
      '--mtls-ca-file',
      flags['mtls-ca-file'],
      '--allow',
      ALLOWED_ID,
    ]);
    const started = await waitForEvent(cli, 'started');
    const port = (started.listen as { port: number }).port;
    const slow = requestVia(port, s.allowed, { path: '/slow?ms=1000' });
    await expect.poll(() => s.app.seen.filter((r) => r.url === '/slow?ms=1000').length).toBeGreaterThanOrEqual(1);
    cli.child.kill('SIGTERM');
    expect((await slow).status).toBe(200);
    const finished = await cli.exited;
    expect(finished.code).toBe(0);
    expect(finished.stdout).toContain('"event":"draining"');
  });
});
