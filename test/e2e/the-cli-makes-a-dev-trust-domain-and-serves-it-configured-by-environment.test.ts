// The whole operator path with real processes: certs init, certs issue, run configured through
// SPIFFE_SIDECAR_* variables (a flag overrides one), curl as the caller, SIGTERM to stop.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runCli, startCli, waitForEvent } from '../helpers/process.js';
import { useWorkspace } from '../helpers/workspace.js';

const run = promisify(execFile);
const ws = useWorkspace();

describe('the CLI makes a dev trust domain and serves it, configured by environment', () => {
  it('issues, serves, authorizes, and stops cleanly on SIGTERM', async () => {
    const ca = join(ws.path, 'ca');
    const init = await runCli(['certs', 'init', '--trust-domain', 'example.org', '--out', ca]);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain('example.org');
    for (const name of ['server', 'client', 'stranger']) {
      const issued = await runCli([
        'certs',
        'issue',
        '--id',
        `spiffe://example.org/${name}`,
        '--ca',
        ca,
        '--out',
        join(ws.path, name),
        '--lifetime',
        '15m',
      ]);
      expect(issued.code, issued.stderr).toBe(0);
    }
    const wrongDomain = await runCli([
      'certs',
      'issue',
      '--id',
      'spiffe://other.org/x',
      '--ca',
      ca,
      '--out',
      join(ws.path, 'x'),
    ]);
    expect(wrongDomain.code).toBe(1);
    expect(wrongDomain.stderr).toContain('trust domain "example.org"');

    const server = join(ws.path, 'server');
    const sidecar = startCli(['--listen', '127.0.0.1:0', '--identity-header', 'x-caller'], {
      SPIFFE_SIDECAR_UPSTREAM: ws.app.url,
      SPIFFE_SIDECAR_MTLS_CERT_FILE: join(server, 'tls.crt'),
      SPIFFE_SIDECAR_MTLS_KEY_FILE: join(server, 'tls.key'),
      SPIFFE_SIDECAR_MTLS_CA_FILE: join(server, 'ca.crt'),
      SPIFFE_SIDECAR_ALLOW: 'spiffe://example.org/client, spiffe://example.org/ops/*',
      SPIFFE_SIDECAR_IDENTITY_HEADER: 'x-overridden-by-the-flag',
      SPIFFE_SIDECAR_XFCC: 'false',
    });
    try {
      const started = await waitForEvent(sidecar, 'started');
      expect(started.spiffe_id).toBe('spiffe://example.org/server');
      const port = (started.listen as { port: number }).port;
      const call = async (who: string) => {
        const { stdout } = await run('curl', [
          '-sS',
          '--insecure',
          '--max-time',
          '10',
          '-w',
          '\n%{http_code}',
          '--cert',
          join(ws.path, who, 'tls.crt'),
          '--key',
          join(ws.path, who, 'tls.key'),
          `https://127.0.0.1:${port}/hello`,
        ]);
        const lines = stdout.trim().split('\n');
        return { status: lines.at(-1), body: lines.slice(0, -1).join('\n') };
      };
      const allowed = await call('client');
      expect(allowed.status).toBe('200');
      const echoed = JSON.parse(allowed.body);
      expect(echoed.headers['x-caller']).toBe('spiffe://example.org/client');
      expect(echoed.headers['x-overridden-by-the-flag']).toBeUndefined();
      expect(echoed.headers['x-forwarded-client-cert']).toBeUndefined();
      expect((await call('stranger')).status).toBe('403');
    } finally {
      sidecar.child.kill('SIGTERM');
    }
    const finished = await sidecar.exited;
    expect(finished.code).toBe(0);
    expect(finished.stdout).toContain('"event":"stopping"');
  });
});
