// Issue 15, finding 6. Piped into `head -1`, the sidecar's stdout has no reader after the first line:
// every later log write fails with EPIPE. SIGTERM must still end the process (not hang in a log flush that
// never completes, not crash on the EPIPE), alone and with --workers, in both log formats. The only bound
// here is the test's own timeout: the process either exits or the test fails.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { tempDir } from '../helpers/pki.js';
import { jwtSidecarArgs, MAIN } from '../helpers/process.js';

let dir: { path: string; remove: () => Promise<void> };
let app: EchoApp;
let bundleFile: string;
const children: ChildProcess[] = [];
const workerPidsSeen: number[] = [];

beforeAll(async () => {
  dir = await tempDir();
  app = await startEchoApp();
  bundleFile = join(dir.path, 'example.org.jwks.json');
  const { publicKey } = await generateKeyPair('ES256', { extractable: true });
  await writeFile(
    bundleFile,
    JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', use: 'jwt-svid' }] }),
  );
});
afterAll(async () => {
  // Only a test that failed leaves one behind.
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const pid of workerPidsSeen) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
  await app?.close();
  await dir?.remove();
});

/**
 * Starts the CLI with stdout on a pipe whose reader closes as soon as the line announcing that it serves
 * has arrived, like `spiffe-sidecar ... | head -1`.
 */
async function startThenCloseStdout(
  readyEvent: string,
  ...extra: string[]
): Promise<{
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: string | null }>;
  stderr: () => string;
  /** What it wrote before its reader went away. */
  stdout: string;
}> {
  const child = spawn(
    process.execPath,
    [MAIN, ...jwtSidecarArgs(app.url, '--jwt-bundle-file', `example.org=${bundleFile}`, '--allow-any', ...extra)],
    {
      env: { PATH: process.env.PATH ?? '', SPIFFE_SIDECAR_ADMIN_LISTEN: '127.0.0.1:0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      seen += d.toString();
      if (!seen.includes(`"event":"${readyEvent}"`) && !seen.includes(readyEvent)) return;
      child.stdout?.off('data', onData);
      child.stdout?.destroy();
      resolve();
    };
    child.stdout?.on('data', onData);
    child.once('exit', () => reject(new Error(`exited before "${readyEvent}": ${stderr}`)));
  });
  return { child, exited, stderr: () => stderr, stdout: seen };
}

describe('SIGTERM ends the process even when nobody reads its stdout any more', () => {
  it.each([['json'], ['pretty']])('one process, --log-format %s', async (format) => {
    const running = await startThenCloseStdout(
      format === 'json' ? 'started' : 'sidecar started',
      '--log-format',
      format,
    );
    running.child.kill('SIGTERM');
    const { code, signal } = await running.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(running.stderr()).not.toMatch(/EPIPE|Unhandled/);
  });

  it('--workers 2: the primary and its workers all exit', async () => {
    const running = await startThenCloseStdout('workers_started', '--workers', '2');
    const workerPids = [...running.stdout.matchAll(/"pid":(\d+),"worker":\d+/g)].map((m) => Number(m[1]));
    workerPidsSeen.push(...workerPids);
    expect(new Set(workerPids).size).toBe(2);
    running.child.kill('SIGTERM');
    const { code, signal } = await running.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    // The primary exits only after its workers did: none is left behind.
    for (const pid of workerPids) expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    expect(running.stderr()).not.toMatch(/EPIPE|Unhandled/);
  });
});
