// --workers 2 with real processes and API keys: each worker keeps its own last-use records, and the
// primary's /api-keys and key gauges merge them: a key counts once whatever the number of workers, was last
// used when any worker saw it, and is unused only if no worker has seen it for --api-key-unused-after.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { printedApiKey, writePolicy } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, writeServingFiles } from '../helpers/pki.js';
import { fileModeArgs, startCli, waitForEvent } from '../helpers/process.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();

const made = (name: string) => printedApiKey({ name, prefix: 'gak_' });

describe("with workers the primary reports every worker's API key use", () => {
  it('/api-keys and the gauges speak for all workers', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const dir = join(ws.path, 'workers');
    await mkdir(dir);
    const files = await writeServingFiles(dir, await issueSvid(ca, { id: 'spiffe://example.org/server' }), ca.certPem);
    const used = made('agent-a');
    const idle = made('agent-b');
    const keysFile = join(dir, 'keys.txt');
    await writeFile(keysFile, `${used.line}\n${idle.line}\n`);
    const policy = await writePolicy(dir, 'policy.json', {
      version: 1,
      rules: [{ name: 'keys', effect: 'allow', callers: { auth: ['api_key'] } }],
    });
    const sidecar = startCli([
      '--workers',
      '2',
      ...fileModeArgs(ws.app.url, files),
      '--policy-file',
      policy,
      '--api-keys-file',
      keysFile,
      '--api-key-header',
      'x-gofannon-key',
      '--api-key-prefix',
      'gak_',
      '--api-key-unused-after',
      '2s',
    ]);
    try {
      const started = await waitForEvent(sidecar, 'workers_started', 20_000);
      const adminPort = (started.admin as { port: number }).port;
      const port = (
        JSON.parse(
          sidecar
            .stdout()
            .split('\n')
            .find((l) => l.includes('"event":"started"')) as string,
        ).listen as { port: number }
      ).port;
      const admin = async (path: string) => {
        const res = await fetch(`http://127.0.0.1:${adminPort}${path}`);
        expect(res.status).toBe(200);
        return res.text();
      };
      const gauges = async () => {
        const text = await admin('/metrics');
        const value = (name: string) =>
          [...text.matchAll(new RegExp(`^${name} (\\S+)$`, 'gm'))].map((m) => Number(m[1]));
        return { listed: value('spiffe_sidecar_api_keys'), unused: value('spiffe_sidecar_api_keys_unused') };
      };
      const keys = async () =>
        (
          JSON.parse(await admin('/api-keys')) as {
            keys: { name: string; last_used_at: string | null; unused: boolean }[];
          }
        ).keys;

      // One connection per request: the kernel spreads them over both workers.
      const results = await Promise.all(
        Array.from({ length: 40 }, () => requestVia(port, undefined, { headers: { 'x-gofannon-key': used.key } })),
      );
      expect(results.map((r) => r.status)).toEqual(Array(40).fill(200));
      await expect
        .poll(
          () =>
            new Set(
              sidecar
                .stdout()
                .split('\n')
                .filter((l) => l.includes('"event":"authz"'))
                .map((l) => JSON.parse(l).pid),
            ).size,
          {
            timeout: 5000,
          },
        )
        .toBe(2);

      expect((await keys()).map((k) => [k.name, k.last_used_at !== null])).toEqual([
        ['agent-a', true],
        ['agent-b', false],
      ]);
      // One series each, counted once (not once per worker).
      expect((await gauges()).listed).toEqual([2]);

      // Nobody for 2s: both unused. Then one request, to one worker: the merge says agent-a was used.
      await expect.poll(async () => (await gauges()).unused, { timeout: 10_000, interval: 200 }).toEqual([2]);
      expect((await requestVia(port, undefined, { headers: { 'x-gofannon-key': used.key } })).status).toBe(200);
      expect(await gauges()).toEqual({ listed: [2], unused: [1] });
      expect((await keys()).map((k) => [k.name, k.unused])).toEqual([
        ['agent-a', false],
        ['agent-b', true],
      ]);
    } finally {
      sidecar.child.kill('SIGTERM');
    }
    const finished = await sidecar.exited;
    expect(finished.code, finished.stderr).toBe(0);
    for (const key of [used.key, idle.key]) expect(finished.stdout).not.toContain(key);
  }, 60_000);
});
