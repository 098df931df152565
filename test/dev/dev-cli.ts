// `spiffe-sidecar dev …` as real processes (`node dist/main.js dev …`), as an operator runs them.
import { type Finished, type Running, startCli } from '../helpers/process.js';

export function startDev(args: string[], cwd?: string): Running {
  return startCli(['dev', ...args], {}, cwd);
}

/** Runs a dev command to completion (killed after `timeoutMs`, so a hang fails the test). */
export async function runDev(args: string[], cwd?: string, timeoutMs = 15_000): Promise<Finished> {
  const running = startDev(args, cwd);
  const timer = setTimeout(() => running.child.kill('SIGKILL'), timeoutMs);
  const finished = await running.exited;
  clearTimeout(timer);
  return finished;
}

/** Resolves with stdout once it contains `text` (as the process writes it); rejects if it exits first. */
export function waitForOutput(running: Running, text: string, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!running.stdout().includes(text)) return false;
      cleanup();
      resolve(running.stdout());
      return true;
    };
    const onExit = () =>
      setImmediate(() => {
        if (check()) return;
        cleanup();
        reject(new Error(`exited before printing ${JSON.stringify(text)}: ${running.stdout()} ${running.stderr()}`));
      });
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no ${JSON.stringify(text)} within ${timeoutMs} ms: ${running.stdout()} ${running.stderr()}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      running.child.stdout?.off('data', check);
      running.child.off('exit', onExit);
    };
    running.child.stdout?.on('data', check);
    running.child.on('exit', onExit);
    if (running.child.stdout) setImmediate(check);
  });
}

/** Stops a long-running dev command with a signal; resolves with how it ended. */
export async function stopDev(running: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<Finished> {
  if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill(signal);
  return running.exited;
}
