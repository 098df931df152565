// The sidecar as the real process (dist/main.js, what an operator runs), with its JSON log lines parsed so a
// scenario can wait for an event that happens after a given point: "a new SVID after the agent restarted".
import { type Running, startCli } from '../../helpers/process.js';

export type LogLine = Record<string, unknown> & { event?: string };

export class SidecarProcess {
  private constructor(
    readonly running: Running,
    readonly name: string,
  ) {}

  /** Starts `spiffe-sidecar run ARGS` and resolves once it logged `started` (so it serves). */
  static async start(name: string, args: string[], timeoutMs = 60_000): Promise<SidecarProcess> {
    const sidecar = new SidecarProcess(startCli(['run', '--listen', '127.0.0.1:0', ...args]), name);
    try {
      await sidecar.waitFor('started', () => true, { timeoutMs });
    } catch (err) {
      await sidecar.stop();
      throw err;
    }
    return sidecar;
  }

  /** Every JSON line logged so far, in order. */
  lines(): LogLine[] {
    return this.running
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  }

  /** How many lines so far: pass it as `after` to wait only for what comes later. */
  mark(): number {
    return this.lines().length;
  }

  events(event: string, after = 0): LogLine[] {
    return this.lines()
      .slice(after)
      .filter((l) => l.event === event);
  }

  /** The inbound listener's port (from `started`). */
  get port(): number {
    const started = this.events('started')[0];
    return (started.listen as { port: number }).port;
  }

  /** Resolves with the first line after `after` with this event that `match` accepts; fails if the process exits. */
  async waitFor(
    event: string,
    match: (line: LogLine) => boolean = () => true,
    { after = 0, timeoutMs = 60_000 }: { after?: number; timeoutMs?: number } = {},
  ): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events(event, after).find(match);
      if (found) return found;
      if (this.running.child.exitCode !== null)
        throw new Error(`${this.name} exited before "${event}": ${this.running.stderr()}\n${this.running.stdout()}`);
      if (Date.now() > deadline)
        throw new Error(`${this.name}: no matching "${event}" within ${timeoutMs} ms; log:\n${this.running.stdout()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM, and wait for the exit (SIGKILL after 15 s). */
  async stop(): Promise<void> {
    const { child } = this.running;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await this.running.exited;
    clearTimeout(timer);
  }
}
