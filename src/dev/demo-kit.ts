// What the demo modes share: a run that owns every child process and server it starts and stops them all
// at the end (also on failure, or on SIGINT/SIGTERM), the real sidecar process with its JSON log, and
// the demo app that shows what the sidecar told it.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { nodeHttp } from '../node-http.js';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const say = (text = ''): void => void process.stdout.write(`${text}\n`);

export type LogLine = Record<string, unknown>;

export interface DemoSidecar {
  readonly child: ChildProcess;
  /** The `started` line: listen, admin, outbound addresses. */
  readonly started: LogLine;
  readonly port: number | undefined;
  readonly adminPort: number;
  readonly outboundPorts: number[];
  readonly logs: LogLine[];
  /** Resolves with the first line (logged so far or later) that matches; rejects after `timeoutMs`. */
  waitFor(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
}

const portOf = (address: unknown): number | undefined => (address as AddressInfo | undefined)?.port;

/** One demo: a temp dir, then every process and server it starts, closed in reverse order. */
export class DemoRun {
  private readonly closers: (() => Promise<void> | void)[] = [];
  private closing: Promise<void> | undefined;
  private readonly onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`demo interrupted (${signal}): stopping what it started\n`);
    void this.close().then(() => process.exit(1));
  };

  constructor() {
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  defer(close: () => Promise<void> | void): void {
    this.closers.push(close);
  }

  async tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'spiffe-sidecar-demo-'));
    this.defer(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** Stops everything it started, last first; each step is bounded, none can stop the others. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
      for (const close of this.closers.reverse()) {
        await Promise.resolve()
          .then(close)
          .catch(() => {});
      }
    })();
    return this.closing;
  }

  /** The real sidecar (`dist/main.js run …`), once it logged `started`. */
  startSidecar(args: string[]): Promise<DemoSidecar> {
    const main = fileURLToPath(new URL('../main.js', import.meta.url));
    const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.defer(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    });
    const logs: LogLine[] = [];
    const waiters = new Set<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
    const waitFor = (match: (l: LogLine) => boolean, timeoutMs = 5000) => {
      const found = logs.find(match);
      if (found) return Promise.resolve(found);
      return new Promise<LogLine>((resolve, reject) => {
        const waiter = {
          match,
          resolve: (line: LogLine) => {
            clearTimeout(timer);
            waiters.delete(waiter);
            resolve(line);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`the sidecar did not log the expected line within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    };
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    let buffered = '';
    child.stdout?.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const text of lines) {
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          continue;
        }
        logs.push(line);
        for (const waiter of [...waiters]) if (waiter.match(line)) waiter.resolve(line);
      }
    });
    return new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the sidecar exited with code ${code}: ${stderr.trim()}`)));
      void waitFor((l) => l.event === 'started', 30_000).then(
        (started) =>
          resolve({
            child,
            started,
            port: portOf(started.listen),
            adminPort: portOf(started.admin) as number,
            outboundPorts: ((started.outbound as { listen: unknown }[] | undefined) ?? []).map(
              (o) => portOf(o.listen) as number,
            ),
            logs,
            waitFor,
          }),
        reject,
      );
    });
  }

  /** The demo app: answers with the identity headers the sidecar gave it, and counts requests. */
  async startApp(name: string): Promise<{ port: number; requests: () => number }> {
    let requests = 0;
    const server = nodeHttp.createServer((req, res) => {
      requests++;
      const shown = ['x-spiffe-id', 'x-jwt-issuer', 'x-jwt-subject', 'x-forwarded-client-cert'];
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ app: name, ...Object.fromEntries(shown.map((h) => [h, req.headers[h]])) }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.defer(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    );
    return { port: (server.address() as AddressInfo).port, requests: () => requests };
  }
}

/** An HTTP answer as one line (`HTTP 200 {...}`), or what went wrong with the connection. */
export async function httpCall(url: string, headers: Record<string, string> = {}): Promise<string> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
    return `HTTP ${res.status} ${await res.text()}`;
  } catch (err) {
    const cause = (err as { cause?: NodeJS.ErrnoException }).cause;
    return `connection failed (${cause?.code ?? (err as Error).message})`;
  }
}

/** The audit lines of a sidecar's log (decisions and refused callers), as logged. */
export function auditLines(logs: LogLine[]): string[] {
  return logs
    .filter((l) => l.event === 'authz' || l.event === 'peer_rejected' || l.event === 'outbound_rejected')
    .map((l) => JSON.stringify(l));
}

/** A demo sidecar's addresses: any free loopback ports (it reports them when started), in front of `upstream`. */
export function frontOf(upstream: string): string[] {
  return ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--upstream', upstream];
}

/** The flags that give a file-mode sidecar the SVID saved in `dir` (tls.crt, tls.key, ca.crt). */
export function svidFileFlags(dir: string): string[] {
  return [
    '--mtls-cert-file',
    join(dir, 'tls.crt'),
    '--mtls-key-file',
    join(dir, 'tls.key'),
    '--mtls-ca-file',
    join(dir, 'ca.crt'),
  ];
}

/**
 * Prints a sidecar's audit lines once `count` of them are there (an access line is written when its exchange is
 * over: wait for them rather than for a fixed time; print what there is if they never come).
 */
export async function showAuditLog(sidecar: DemoSidecar, count: number): Promise<void> {
  await sidecar.waitFor(() => auditLines(sidecar.logs).length >= count).catch(() => undefined);
  say();
  say('the sidecar audit log:');
  for (const line of auditLines(sidecar.logs)) say(`   ${line}`);
}
