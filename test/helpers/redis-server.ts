// A real redis-server (Debian's package; `.ci/run` installs it) on a free loopback port, in a folder of
// the test's own, with no persistence. It can be killed and started again on the same port, and it can
// serve TLS only (rediss://) with client certificates required.
import { freePort } from './free-port.js';
import { type ChildProcess, spawn } from 'node:child_process';

export interface RedisTls {
  certFile: string;
  keyFile: string;
  /** The CAs whose client certificates are accepted. */
  caFile: string;
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Ends the server (SIGKILL: what a crash looks like) and waits until it has exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty: nothing persists). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

function launch(dir: string, port: number, options: { tls?: RedisTls; password?: string }): Promise<ChildProcess> {
  const { tls, password } = options;
  const args = [
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
    ...(password ? ['--requirepass', password] : []),
    ...(tls
      ? [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--tls-cert-file',
          tls.certFile,
          '--tls-key-file',
          tls.keyFile,
          '--tls-ca-cert-file',
          tls.caFile,
          '--tls-auth-clients',
          'yes',
        ]
      : ['--port', String(port)]),
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('error', (err) =>
      reject(new Error(`redis-server could not start (apt-get install redis-server): ${err.message}`)),
    );
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code} before it was ready:\n${out}`)));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts redis-server; `dir` is the test's own folder. */
export async function startRedis(
  dir: string,
  options: { tls?: RedisTls; password?: string } = {},
): Promise<RedisServer> {
  let port = 0;
  let child: ChildProcess | undefined;
  // The free port can be taken between the probe and redis's bind: try another then.
  for (let attempt = 0; !child; attempt++) {
    port = await freePort();
    try {
      child = await launch(dir, port, options);
    } catch (err) {
      if (attempt >= 4) throw err;
    }
  }
  const scheme = options.tls ? 'rediss' : 'redis';
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    async kill() {
      const running = child as ChildProcess;
      running.kill('SIGKILL');
      await exited(running);
    },
    async restart() {
      child = await launch(dir, port, options);
    },
    async close() {
      const running = child as ChildProcess;
      running.kill('SIGKILL');
      await exited(running);
    },
  };
}
