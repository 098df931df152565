#!/usr/bin/env node
// Process entry: argv → command → run it. Startup problems print one clear line to stderr and exit 1;
// SIGHUP reloads the identity files; SIGTERM/SIGINT close the listener and exit 0.
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { type Sidecar, startSidecar } from './app.js';
import { helpText, parseCommandLine } from './cli.js';
import { buildConfig } from './config.js';
import { isSidecarError } from './errors.js';
import { createLogger, prettyDestination } from './log.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<void> {
  const command = parseCommandLine(argv);
  switch (command.command) {
    case 'help':
      process.stdout.write(helpText());
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
      const root = createLogger(config.logLevel, config.logFormat === 'pretty' ? prettyDestination() : undefined);
      // With --workers, each line says which process wrote it.
      const log = cluster.isWorker ? root.child({ pid: process.pid, worker: cluster.worker?.id }) : root;
      if (config.workers > 1 && cluster.isPrimary) {
        const { runPrimary } = await import('./workers.js');
        const primary = await runPrimary(config, log);
        const stopAll = (signal: string) => {
          log.info({ event: 'stopping', signal }, 'stopping');
          primary.stop(signal).then(
            () => log.flush(() => process.exit(0)),
            () => process.exit(1),
          );
        };
        process.once('SIGTERM', () => stopAll('SIGTERM'));
        process.once('SIGINT', () => stopAll('SIGINT'));
        return;
      }
      // Signals are handled from the start: SPIRE mode may wait a long time for its first SVID.
      const running: { sidecar?: Sidecar; stopping?: boolean } = {};
      const stop = (signal: string) => {
        if (running.stopping) return;
        running.stopping = true;
        log.info({ event: 'stopping', signal }, 'stopping');
        (running.sidecar ? running.sidecar.stop() : Promise.resolve()).then(
          () => log.flush(() => process.exit(0)),
          (err: unknown) => {
            log.error({ err }, 'close failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGHUP', () => void running.sidecar?.reload('SIGHUP'));
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      running.sidecar = await startSidecar(config, log, cluster.isWorker ? 'worker' : 'alone');
      if (running.stopping) await running.sidecar.stop();
      else if (cluster.isWorker) (await import('./workers.js')).reportStarted();
      return;
    }
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (isSidecarError(err)) {
    process.stderr.write(`spiffe-sidecar: ${err.code}: ${err.message}\n`);
  } else {
    process.stderr.write(
      `spiffe-sidecar: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  }
  process.exit(1);
});
