// With --workers every process writes its log to the one stdout pipe. A write(2) to a pipe is whole only up to
// PIPE_BUF (4 KiB), and libuv makes the pipe non-blocking, so when the reader falls behind, one process's batch
// went out in pieces with another's between them: two broken lines each time (a review: 611 of 39,696 lines under
// a slow reader). Each process now writes whole lines, 4 KiB at most, one write at a time. Here the reader stops
// while the workers log 4,000 access lines, then reads on: every line must be whole JSON, and every request's
// line must be there.
import { Agent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createDevCa, issueSvid } from '../../src/certs/dev-ca.js';
import type { ClientCert } from '../helpers/client.js';
import { servingFiles } from '../helpers/pki.js';
import { fileModeArgs, logLinesSince, startCli, waitForEvent } from '../helpers/process.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();
const REQUESTS = 4000;

function get(port: number, path: string, cert: ClientCert, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path, cert: cert.chainPem, key: cert.keyPem, rejectUnauthorized: false, agent },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

it('4,000 access lines from two workers through a stalled stdout: every line whole, none missing', async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const files = await servingFiles(join(ws.path, 'server'), ca, 'spiffe://example.org/server');
  const client = await issueSvid(ca, { id: 'spiffe://example.org/client' });
  const sidecar = startCli(
    fileModeArgs(ws.app.url, files, '--workers', '2', '--allow', 'spiffe://example.org/client'),
    { SPIFFE_SIDECAR_ADMIN_LISTEN: '127.0.0.1:0' },
  );
  // 32 connections, which the kernel spreads over the workers (all to one of them is possible on a busy machine:
  // the lines must then be whole all the same).
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  try {
    await waitForEvent(sidecar, 'workers_started', 20_000);
    const port = (logLinesSince(sidecar, 0).find((l) => l.event === 'started')?.listen as { port: number }).port;
    // The reader stops: the pipe fills, and the workers' writes wait.
    sidecar.child.stdout?.pause();
    const statuses = await Promise.all(
      Array.from({ length: REQUESTS }, (_, i) => get(port, `/line-${i}`, client, agent)),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    sidecar.child.stdout?.resume();

    // Every request's line arrives (a spliced line would break its marker and never be counted).
    const marked = () => sidecar.stdout().match(/"path":"\/line-\d+"/g)?.length ?? 0;
    await expect.poll(marked, { timeout: 30_000 }).toBe(REQUESTS);
    const lines = sidecar
      .stdout()
      .split('\n')
      .filter((l) => l !== '');
    const broken = lines.filter((l) => {
      try {
        JSON.parse(l);
        return false;
      } catch {
        return true;
      }
    });
    expect(broken).toEqual([]);
    const paths = lines.map((l) => (JSON.parse(l) as { path?: string }).path).filter((p) => p?.startsWith('/line-'));
    expect(new Set(paths).size).toBe(REQUESTS);
  } finally {
    agent.destroy();
    sidecar.child.kill('SIGTERM');
    await sidecar.exited;
  }
});
