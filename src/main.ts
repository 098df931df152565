#!/usr/bin/env node
// Process entry: argv → command → run it. Startup problems print one clear line to stderr and exit 1;
// SIGHUP reloads the identity files; SIGTERM/SIGINT close the listener and exit 0, within the drain limit
// plus a short grace whatever else hangs (a close that never ends, a log reader that went away).
import { readFileSync } from 'node:fs';
import { type Sidecar, startSidecar } from './app.js';
import { helpText, parseCommandLine } from './cli.js';
import { buildConfig } from './config.js';
import { isSidecarError } from './errors.js';
import { createLogger, logWritten, prettyDestination, shareStdoutLines } from './log.js';

/** After the drain limit, this long for the rest of the shutdown before the process exits regardless. */
const STOP_GRACE_MS = 5000;
/** The longest a shutdown waits for its last log lines to be written. */
const LOG_WAIT_MS = 2000;

/** Exits once the log lines so far are written, or after LOG_WAIT_MS: never on the reader's schedule. */
function exitAfterLog(code: number): void {
  void logWritten(LOG_WAIT_MS).then(() => process.exit(code));
}

/** The hard deadline of a shutdown: a stop that has not finished by then exits with status 1. */
function armStopDeadline(drainTimeoutMs: number, log: ReturnType<typeof createLogger>): void {
  const limitMs = drainTimeoutMs + STOP_GRACE_MS;
  setTimeout(() => {
    log.error({ event: 'stop_timed_out', limit_ms: limitMs }, 'shutdown did not finish in time; exiting anyway');
    exitAfterLog(1);
  }, limitMs).unref();
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<void> {
  const command = parseCommandLine(argv);
  switch (command.command) {
    case 'help':
      process.stdout.write(
        command.topic === 'dev' ? (await import('./dev/commands.js')).devHelpText() : helpText(command.topic),
      );
      return;
    case 'version':
      process.stdout.write(`${version()}\n`);
      return;
    case 'certs-init':
      process.stdout.write(`${await (await import('./certs/commands.js')).certsInit(command.options)}\n`);
      return;
    case 'certs-issue':
      process.stdout.write(`${await (await import('./certs/commands.js')).certsIssue(command.options)}\n`);
      return;
    case 'policy-check': {
      const { policyCheck } = await import('./authz/policy-commands.js');
      process.exitCode = await policyCheck(command.options, command.method, command.path, process.stdout);
      return;
    }
    case 'dev': {
      // Loaded only here: `run` never pays for the dev helpers.
      const { runDevCommand } = await import('./dev/commands.js');
      process.exitCode = await runDevCommand(command.argv, process.stdout);
      return;
    }
    case 'apikey-new':
      process.stdout.write((await import('./authn/api-key-commands.js')).apiKeyNew(command.options));
      return;
    case 'inject-webhook': {
      const webhook = await (await import('./webhook/command.js')).runInjectWebhook(command.options);
      const stop = () => void webhook.stop().then(() => process.exit(0));
      // The certificate reloads on its own when its files change; SIGHUP must not kill the injector.
      process.on('SIGHUP', () => {});
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      return;
    }
    case 'run': {
      const config = buildConfig(command.options);
      // node:cluster (and child_process under it) only with --workers or in a worker: 3 ms of every start.
      const cluster =
        config.workers > 1 || 'NODE_UNIQUE_ID' in process.env ? (await import('node:cluster')).default : undefined;
      // With --workers every process writes to the one stdout: whole lines per write, none spliced into another's.
      if (cluster) shareStdoutLines();
      const root = createLogger(config.logLevel, config.logFormat === 'pretty' ? prettyDestination() : undefined);
      // With --workers, each line says which process wrote it.
      const log = cluster?.isWorker ? root.child({ pid: process.pid, worker: cluster.worker?.id }) : root;
      if (config.workers > 1 && cluster?.isPrimary) {
        const { runPrimary } = await import('./workers.js');
        // Handled before the workers start, as below: a SIGTERM right after `workers_started` was logged
        // must not find the default action (death without draining the workers).
        const primary: { running?: Awaited<ReturnType<typeof runPrimary>>; stopping?: string } = {};
        const stopPrimary = (signal: string) => {
          (primary.running as NonNullable<typeof primary.running>).stop(signal).then(
            () => exitAfterLog(0),
            () => exitAfterLog(1),
          );
        };
        const stopAll = (signal: string) => {
          if (primary.stopping) return;
          primary.stopping = signal;
          log.info({ event: 'stopping', signal }, 'stopping');
          armStopDeadline(config.drainTimeoutMs, log);
          if (primary.running) stopPrimary(signal);
        };
        process.once('SIGTERM', () => stopAll('SIGTERM'));
        process.once('SIGINT', () => stopAll('SIGINT'));
        primary.running = await runPrimary(config, log);
        if (primary.stopping) stopPrimary(primary.stopping);
        return;
      }
      // Signals are handled from the start: SPIRE mode may wait a long time for its first SVID.
      const running: { sidecar?: Sidecar; stopping?: boolean } = {};
      const stop = (signal: string) => {
        if (running.stopping) return;
        running.stopping = true;
        log.info({ event: 'stopping', signal }, 'stopping');
        armStopDeadline(config.drainTimeoutMs, log);
        (running.sidecar ? running.sidecar.stop() : Promise.resolve()).then(
          () => exitAfterLog(0),
          (err: unknown) => {
            log.error({ err }, 'close failed');
            exitAfterLog(1);
          },
        );
      };
      process.on('SIGHUP', () => void running.sidecar?.reload('SIGHUP'));
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      running.sidecar = await startSidecar(config, log, cluster?.isWorker ? 'worker' : 'alone');
      if (running.stopping) await running.sidecar.stop();
      else if (cluster?.isWorker) await (await import('./workers.js')).reportStarted();
      return;
    }
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (isSidecarError(err)) {
    process.stderr.write(`spiffe-sidecar: ${err.code}: ${err.message}\n`);
  } else if (typeof (err as NodeJS.ErrnoException).syscall === 'string') {
    // A file or socket the operating system refused (a path the checks above did not foresee): its own
    // message names the call and the path; a stack trace would add nothing for the operator.
    process.stderr.write(`spiffe-sidecar: unexpected error: ${(err as Error).message}\n`);
  } else {
    process.stderr.write(
      `spiffe-sidecar: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  }
  process.exit(1);
});
