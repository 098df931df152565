// --workers: the primary replaces a worker that exits. A replacement that exits before it has started (its
// certificate file being rewritten just then) used to be left for good, the sidecar up but never ready again
// (a review). It is started again, waiting longer each time, and once the file is back the sidecar is ready. A
// SIGHUP while a replacement starts goes only to the workers that have started: one still starting has no
// handler yet, and the signal's default action would have killed it.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createDevCa } from '../../src/certs/dev-ca.js';
import { servingFiles } from '../helpers/pki.js';
import { fileModeArgs, logLinesSince, loggedSince, startCli, waitForEvent } from '../helpers/process.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();

async function readyz(port: number): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
}

it(
  'a replacement that exits before it starts is started again; SIGHUP spares one that is starting',
  { timeout: 120_000 },
  async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const files = await servingFiles(join(ws.path, 'server'), ca, 'spiffe://example.org/server');
    const sidecar = startCli(
      fileModeArgs(ws.app.url, files, '--workers', '2', '--allow', 'spiffe://example.org/client', '--no-watch'),
      { SPIFFE_SIDECAR_ADMIN_LISTEN: '127.0.0.1:0' },
    );
    try {
      const adminPort = ((await waitForEvent(sidecar, 'workers_started', 20_000)).admin as { port: number }).port;
      expect(await readyz(adminPort)).toBe(200);
      const firstPid = (logLinesSince(sidecar, 0).find((l) => l.event === 'started') as { pid: number }).pid;

      // The certificate is away while the worker dies: its replacement cannot start.
      const certificate = await readFile(files.certFile);
      await rm(files.certFile);
      let from = sidecar.stdout().length;
      process.kill(firstPid, 'SIGKILL');
      const failed = await loggedSince(sidecar, from, (l) => l.event === 'worker_exited' && l.starting === true);
      expect(failed).toMatchObject({ level: 'error', restart_in_ms: 2000 });
      expect(await readyz(adminPort)).toBe(503);

      // The file is back: the next replacement starts, and the sidecar is ready again.
      await writeFile(files.certFile, certificate);
      await expect.poll(() => readyz(adminPort), { timeout: 30_000, interval: 200 }).toBe(200);

      // A SIGHUP barrage while the next replacement starts: it reaches only the worker that serves.
      const servingPids = logLinesSince(sidecar, 0)
        .filter((l) => l.event === 'started')
        .map((l) => l.pid as number);
      from = sidecar.stdout().length;
      process.kill(servingPids.at(-1) as number, 'SIGKILL');
      await loggedSince(sidecar, from, (l) => l.event === 'worker_exited');
      const barrage = setInterval(() => sidecar.child.kill('SIGHUP'), 20);
      try {
        await expect.poll(() => readyz(adminPort), { timeout: 30_000, interval: 100 }).toBe(200);
      } finally {
        clearInterval(barrage);
      }
      // No replacement died starting: the signals went to the worker that had started.
      expect(logLinesSince(sidecar, from).filter((l) => l.event === 'worker_exited' && l.starting === true)).toEqual(
        [],
      );
    } finally {
      sidecar.child.kill('SIGTERM');
      await sidecar.exited;
    }
  },
);
