// The real process in SPIRE mode: configured only by SPIFFE_ENDPOINT_SOCKET (read as-is), started
// before its agent; it waits (not ready) and serves once the first SVID arrives. Bad addresses and
// mixed modes are refused at startup.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createDevCa, issueSvid } from '../helpers/pki.js';
import { runCli, startCli, waitForEvent } from '../helpers/process.js';
import { useWorkspace } from '../helpers/workspace.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';

const run = promisify(execFile);
const ws = useWorkspace();

describe('in SPIRE mode the real process waits for the agent, then serves', () => {
  it('starts without an agent, reports waiting, and serves once the agent delivers', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const server = await issueSvid(ca, { id: 'spiffe://example.org/server' });
    const caller = await issueSvid(ca, { id: 'spiffe://example.org/client' });
    const socketPath = join(ws.path, 'agent.sock');
    const sidecar = startCli(
      ['--listen', '127.0.0.1:0', '--upstream', ws.app.url, '--allow', 'spiffe://example.org/client'],
      {
        SPIFFE_ENDPOINT_SOCKET: `unix://${socketPath}`,
      },
    );
    let api: TestWorkloadApi | undefined;
    try {
      const waiting = await waitForEvent(sidecar, 'waiting_for_identity');
      expect(waiting.endpoint).toBe(`unix://${socketPath}`);
      const ended = await waitForEvent(sidecar, 'workload_api_stream_ended');
      expect(ended.code).toBe('UNAVAILABLE');
      expect(sidecar.stdout()).not.toContain('"event":"started"');

      api = await TestWorkloadApi.start(socketPath);
      api.setX509({ svids: [{ spiffeId: 'spiffe://example.org/server', svid: server, bundlePem: ca.certPem }] });
      const started = await waitForEvent(sidecar, 'started', 15_000);
      expect(started).toMatchObject({ source: 'workload-api', spiffe_id: 'spiffe://example.org/server' });
      const port = (started.listen as { port: number }).port;
      await writeFile(join(ws.path, 'caller.crt'), caller.chainPem);
      await writeFile(join(ws.path, 'caller.key'), caller.keyPem);
      const { stdout } = await run('curl', [
        '-sS',
        '--insecure',
        '--max-time',
        '10',
        '--cert',
        join(ws.path, 'caller.crt'),
        '--key',
        join(ws.path, 'caller.key'),
        `https://127.0.0.1:${port}/`,
      ]);
      expect(JSON.parse(stdout).headers['x-spiffe-id']).toBe('spiffe://example.org/client');
      expect(api.calls[0]).toEqual({ method: 'FetchX509SVID', header: ['true'] });
    } finally {
      sidecar.child.kill('SIGTERM');
      await sidecar.exited;
      await api?.close();
    }
  });

  it('SIGHUP while waiting is harmless and SIGTERM while waiting exits 0', async () => {
    const sidecar = startCli(['--listen', '127.0.0.1:0', '--upstream', ws.app.url, '--allow-any'], {
      SPIFFE_ENDPOINT_SOCKET: `unix://${join(ws.path, 'never.sock')}`,
    });
    await waitForEvent(sidecar, 'waiting_for_identity');
    // Signals reach the process in the order sent: the SIGTERM below is handled after the SIGHUP, so a
    // clean stop proves the SIGHUP neither killed it (default action) nor threw.
    sidecar.child.kill('SIGHUP');
    sidecar.child.kill('SIGTERM');
    const finished = await sidecar.exited;
    expect(finished.signal).toBeNull();
    expect(finished.code).toBe(0);
    expect(finished.stdout).toContain('"event":"stopping"');
    expect(finished.stdout).not.toContain('"event":"started"');
  });

  it.each([
    [['--workload-api-socket', 'unix://agent.sock'], {}, '--workload-api-socket'],
    [['--workload-api-socket', 'tcp://localhost:8081'], {}, 'IP:port'],
    [[], { SPIFFE_ENDPOINT_SOCKET: '/run/spire/agent.sock' }, 'SPIFFE_ENDPOINT_SOCKET'],
    [['--workload-api-socket', 'unix:///a.sock', '--mtls-cert-file', 'x'], {}, 'exclude each other'],
    [['--workload-api-socket', 'unix:///a.sock', '--federated-bundle', 'b.org=/b.pem'], {}, 'file mode'],
    [['--mtls-cert-file', 'a', '--mtls-key-file', 'b', '--mtls-ca-file', 'c', '--svid-hint', 'x'], {}, '--svid-hint'],
    [[], {}, 'no identity source'],
  ])('refuses %j %j (%s)', async (flags, env, fragment) => {
    const result = await runCli(['--upstream', 'http://127.0.0.1:1', '--allow-any', ...flags], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^spiffe-sidecar: ERR_CONFIG_(INVALID|MISSING): /);
    expect(result.stderr).toContain(fragment);
  });
});
