// Starts the real sidecar in-process on an ephemeral loopback port, with its log lines captured.
import { PassThrough } from 'node:stream';
import { type Sidecar, startSidecar } from '../../src/app.js';
import { buildConfig, type RawOptions } from '../../src/config.js';
import { FileIdentitySource } from '../../src/identity/file-source.js';
import { WorkloadApiIdentitySource } from '../../src/identity/workload-api-source.js';
import { createLogger, type Logger } from '../../src/log.js';

/** A logger whose JSON lines land in `logs`, parsed. */
export function capturingLogger(level: Parameters<typeof createLogger>[0] = 'debug') {
  const logs: Record<string, unknown>[] = [];
  const stream = new PassThrough();
  let pending = '';
  stream.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    let nl = pending.indexOf('\n');
    while (nl !== -1) {
      logs.push(JSON.parse(pending.slice(0, nl)));
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
    }
  });
  const log: Logger = createLogger(level, stream);
  return { log, logs };
}

type Started<S> = Omit<Sidecar, 'identity'> & { identity: S; port: number; logs: Record<string, unknown>[] };
export type TestSidecar = Started<FileIdentitySource>;
export type SpireTestSidecar = Started<WorkloadApiIdentitySource>;

async function start(options: RawOptions) {
  const config = buildConfig({
    listen: '127.0.0.1:0',
    'admin-listen': '127.0.0.1:0',
    'log-level': 'debug',
    ...options,
  });
  const { log, logs } = capturingLogger(config.logLevel);
  const sidecar = await startSidecar(config, log);
  return Object.assign(sidecar, { port: config.inbound ? sidecar.address().port : 0, logs });
}

/** File mode. */
export async function startTestSidecar(options: RawOptions): Promise<TestSidecar> {
  const sidecar = await start(options);
  // File mode, or no X.509 identity at all (JWT over plain HTTP).
  if (sidecar.identity !== undefined && !(sidecar.identity instanceof FileIdentitySource))
    throw new Error('expected file mode');
  return sidecar as TestSidecar;
}

/** SPIRE mode: resolves once the first SVID has arrived and the listener is up. */
export async function startSpireTestSidecar(options: RawOptions): Promise<SpireTestSidecar> {
  const sidecar = await start(options);
  if (!(sidecar.identity instanceof WorkloadApiIdentitySource)) throw new Error('expected SPIRE mode');
  return sidecar as SpireTestSidecar;
}
