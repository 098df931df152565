// A sidecar runs in every pod, and most of them are idle most of the time: idle, it must not spin. prom-client's
// event-loop-lag histogram samples every 10 ms by default (100 wake-ups a second, ~1-2% of a core per idle sidecar
// on Node 20); ours samples every 100 ms. Counted, not timed: the main thread's voluntary context switches (each
// one a wake-up from epoll) over two idle seconds, on the real process, with /metrics served once so that
// prom-client's collectors are running. A slower machine can only lower the count.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createDevCa, issueSvid } from '../../src/certs/dev-ca.js';
import { fileModeArgs, startCli, waitForEvent } from '../helpers/process.js';
import { writeSecretVolume } from '../helpers/secret-volume.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();

async function mainThreadWakeups(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/task/${pid}/status`, 'utf8');
  return Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status)?.[1]);
}

describe('an idle sidecar sleeps', () => {
  it('wakes its main thread well under 100 times in two idle seconds (prom-client alone would: ~200)', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const svid = await issueSvid(ca, { id: 'spiffe://example.org/idle' });
    const volume = join(ws.path, 'idle');
    await writeSecretVolume(volume, { 'tls.crt': svid.chainPem, 'tls.key': svid.keyPem, 'ca.crt': ca.certPem });
    const files = {
      certFile: join(volume, 'tls.crt'),
      keyFile: join(volume, 'tls.key'),
      caFile: join(volume, 'ca.crt'),
    };
    const sidecar = startCli(fileModeArgs(ws.app.url, files, '--allow', 'spiffe://example.org/caller'));
    try {
      const started = await waitForEvent(sidecar, 'started');
      const admin = started.admin as { port: number };
      const metrics = await fetch(`http://127.0.0.1:${admin.port}/metrics`);
      expect(await metrics.text()).toMatch(/^nodejs_eventloop_lag_p99_seconds /m);
      const pid = sidecar.child.pid as number;
      const before = await mainThreadWakeups(pid);
      await new Promise((r) => setTimeout(r, 2000));
      const wakeups = (await mainThreadWakeups(pid)) - before;
      expect(wakeups).toBeGreaterThan(0);
      expect(wakeups).toBeLessThan(100);
      // And the sampling interval itself, from a positive signal: the lag histogram's smallest sample is about the
      // interval (0.0996 s was seen: the histogram's precision), and ~0.010 s at prom-client's default.
      const text = await (await fetch(`http://127.0.0.1:${admin.port}/metrics`)).text();
      const min = Number(/^nodejs_eventloop_lag_min_seconds (\S+)$/m.exec(text)?.[1]);
      expect(min).toBeGreaterThan(0.05);
    } finally {
      sidecar.child.kill('SIGTERM');
      await sidecar.exited;
    }
  });
});
