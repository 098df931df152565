// Starts the real sidecar in-process on an ephemeral loopback port, with its log lines captured.
import { PassThrough } from 'node:stream';
import { type Sidecar, startSidecar } from '../../src/app.js';
import { buildConfig, type RawOptions } from '../../src/config.js';
import { createLogger } from '../../src/log.js';

export interface TestSidecar extends Sidecar {
  port: number;
  logs: Record<string, unknown>[];
}

export async function startTestSidecar(options: RawOptions): Promise<TestSidecar> {
  const config = buildConfig({ listen: '127.0.0.1:0', 'log-level': 'debug', ...options });
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
  const sidecar = await startSidecar(config, createLogger(config.logLevel, stream));
  return Object.assign(sidecar, { port: sidecar.address().port, logs });
}
