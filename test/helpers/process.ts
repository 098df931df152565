// Runs the built CLI as a real process, the way an operator does.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<Finished>;
}

export function startCli(args: string[], env: Record<string, string> = {}, cwd?: string): Running {
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd,
    // An ephemeral admin port: tests run side by side (a test may still set its own).
    env: { PATH: process.env.PATH ?? '', SPIFFE_SIDECAR_ADMIN_LISTEN: '127.0.0.1:0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<Finished>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs the CLI to completion (with a time limit, so a process that hangs fails the test). */
export async function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<Finished> {
  const running = startCli(args, env);
  const timer = setTimeout(() => running.child.kill('SIGKILL'), timeoutMs);
  const finished = await running.exited;
  clearTimeout(timer);
  return finished;
}

/**
 * Resolves with the first JSON log line that `match` accepts (whole lines only: the last piece may still be
 * being written); rejects if the process exits first, or after `timeoutMs`.
 */
export async function waitForLine(
  running: Running,
  match: (line: Record<string, unknown>) => boolean,
  timeoutMs = 10_000,
  what = 'matching log line',
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const text of running.stdout().split('\n').slice(0, -1)) {
      if (!text.startsWith('{')) continue;
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        continue; // not a log line (a command's own output)
      }
      if (match(line)) return line;
    }
    if (running.child.exitCode !== null) throw new Error(`process exited before ${what}: ${running.stderr()}`);
    if (Date.now() > deadline)
      throw new Error(`no ${what} within ${timeoutMs} ms; stdout: ${running.stdout()} stderr: ${running.stderr()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The JSON log lines `running` wrote after `from` characters of its stdout, whole lines only (not one being written). */
export function logLinesSince(running: Running, from: number): Record<string, unknown>[] {
  const out = running.stdout();
  return out
    .slice(from, out.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * The first JSON log line after `from` characters of stdout that `match` accepts, once it is there (waited for
 * on the log, never a sleep); rejects after `timeoutMs`.
 */
export async function loggedSince(
  running: Running,
  from: number,
  match: (line: Record<string, unknown>) => boolean,
  timeoutMs = 25_000,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = logLinesSince(running, from).find(match);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching log line within ${timeoutMs} ms after offset ${from}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Resolves once the process logged a JSON line with this event; rejects if it exits first. */
export function waitForEvent(running: Running, event: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return waitForLine(running, (l) => l.event === event, timeoutMs, `"${event}"`);
}

/** The command line of a JWT-mode sidecar on an ephemeral port in front of `upstream`, audience `orders`. */
export function jwtSidecarArgs(upstream: string, ...extra: string[]): string[] {
  return [
    '--listen',
    '127.0.0.1:0',
    '--upstream',
    upstream,
    '--auth-mode',
    'jwt',
    '--jwt-audience',
    'orders',
    ...extra,
  ];
}

/** The command line of a file-mode sidecar on an ephemeral port in front of `upstream`. */
export function fileModeArgs(
  upstream: string,
  files: { certFile: string; keyFile: string; caFile: string },
  ...extra: string[]
): string[] {
  return [
    '--listen',
    '127.0.0.1:0',
    '--upstream',
    upstream,
    '--mtls-cert-file',
    files.certFile,
    '--mtls-key-file',
    files.keyFile,
    '--mtls-ca-file',
    files.caFile,
    ...extra,
  ];
}
