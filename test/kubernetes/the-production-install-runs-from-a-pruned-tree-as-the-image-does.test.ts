// The image's runtime is `npm ci --omit=dev` plus dist/ and package.json, run as `node dist/main.js`:
// this test builds exactly that tree (no dev dependency, no source, no test helper) and runs it the way
// the Dockerfile's ENTRYPOINT does: --version, a real file-mode sidecar that reports ready, and the
// injector. A runtime import of a dev dependency anywhere fails here. It also checks the Dockerfile says
// what this test does.
import { execFile, spawn } from 'node:child_process';
import { cp, mkdir, readdir, readFile } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIDECAR_UID } from '../../src/webhook/sidecar-container.js';
import { createWebhookCa, issueServingCertificate, writeServingSecret } from '../helpers/admission.js';
import { tempDir } from '../helpers/pki.js';
import { closedPort } from '../helpers/tcp-echo-app.js';
import { type Running, waitForEvent } from '../helpers/process.js';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
let app: string;
let removeDir: () => Promise<void>;

/** The node flags of the Dockerfile's ENTRYPOINT (checked below). */
const IMAGE_NODE_FLAGS = ['--max-semi-space-size=4', '--max-old-space-size=256'];

/** The image's OpenSSL configuration, in dist/ (its `ENV OPENSSL_CONF`, checked below). */
const IMAGE_OPENSSL_CONF = '/app/dist/openssl.cnf';

/**
 * `node FLAGS dist/main.js ARGS` in the pruned tree, as the image's ENTRYPOINT runs it, with the image's
 * OpenSSL configuration (`opensslConf: false`: without it).
 */
function startPruned(args: string[], { opensslConf = true } = {}): Running {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '', NODE_ENV: 'production' };
  if (opensslConf) env.OPENSSL_CONF = join(app, 'dist', 'openssl.cnf');
  const child = spawn(process.execPath, [...IMAGE_NODE_FLAGS, join(app, 'dist', 'main.js'), ...args], {
    cwd: app,
    env,
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
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>(
    (resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function runPruned(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [join(app, 'dist', 'main.js'), ...args], { cwd: app, timeout: 15_000 });
}

/**
 * A dev trust domain made by the pruned tree's CLI in `dir` (beside the tree): its CA in `ca/`, and an SVID
 * `spiffe://example.org/ns/shop/sa/NAME` in `NAME/` for each name.
 */
async function devTrustDomain(dir: string, names: string[]): Promise<string> {
  const certs = join(app, '..', dir);
  await runPruned(['certs', 'init', '--trust-domain', 'example.org', '--out', join(certs, 'ca')]);
  for (const name of names) {
    const id = `spiffe://example.org/ns/shop/sa/${name}`;
    await runPruned(['certs', 'issue', '--ca', join(certs, 'ca'), '--id', id, '--out', join(certs, name)]);
  }
  return certs;
}

async function stop(running: Running): Promise<number | null> {
  running.child.kill('SIGTERM');
  return (await running.exited).code;
}

beforeAll(async () => {
  const dir = await tempDir('spiffe-sidecar-prod-');
  removeDir = dir.remove;
  app = join(dir.path, 'app');
  await mkdir(app);
  for (const file of ['package.json', 'package-lock.json']) await cp(join(ROOT, file), join(app, file));
  await cp(join(ROOT, 'dist'), join(app, 'dist'), { recursive: true });
  await run('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd: app,
    timeout: 240_000,
  });
}, 300_000);
afterAll(() => removeDir?.());

describe('the production install runs from a pruned tree as the image does', () => {
  it('has no dev dependency installed', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
      devDependencies: Record<string, string>;
    };
    for (const dev of ['kubernetes-models', 'rfc6902', 'ajv', 'vitest', 'typescript']) {
      expect(Object.keys(pkg.devDependencies)).toContain(dev);
      await expect(readFile(join(app, 'node_modules', dev, 'package.json'))).rejects.toThrow(/ENOENT/);
    }
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(await readFile(join(app, 'package.json'), 'utf8')) as { version: string };
    expect((await runPruned(['--version'])).stdout).toBe(`${pkg.version}\n`);
  });

  it('makes a dev trust domain, then serves it in file mode and reports ready', async () => {
    const certs = await devTrustDomain('certs', ['orders']);
    const sidecar = startPruned([
      '--listen=127.0.0.1:0',
      '--admin-listen=127.0.0.1:0',
      '--upstream=http://127.0.0.1:8080',
      `--mtls-cert-file=${join(certs, 'orders', 'tls.crt')}`,
      `--mtls-key-file=${join(certs, 'orders', 'tls.key')}`,
      `--mtls-ca-file=${join(certs, 'orders', 'ca.crt')}`,
      '--allow=spiffe://example.org/ns/shop/sa/frontend',
    ]);
    try {
      const started = await waitForEvent(sidecar, 'started');
      expect(started.spiffe_id).toBe('spiffe://example.org/ns/shop/sa/orders');
      const ready = await fetch(`http://127.0.0.1:${(started.admin as { port: number }).port}/readyz`);
      expect(ready.status).toBe(200);
    } finally {
      expect(await stop(sidecar)).toBe(0);
    }
  });

  it("sends one TLS 1.3 session ticket per full handshake with the image's OpenSSL configuration (OpenSSL's two without it)", async () => {
    const certs = await devTrustDomain('certs-tickets', ['orders', 'frontend']);
    const client = {
      cert: await readFile(join(certs, 'frontend', 'tls.crt')),
      key: await readFile(join(certs, 'frontend', 'tls.key')),
      ca: await readFile(join(certs, 'frontend', 'ca.crt')),
    };
    // No app there: the request gets a 502 (a port that was free a moment ago, not a well-known one).
    const noApp = await closedPort();
    const ticketsFrom = async (opensslConf: boolean): Promise<number> => {
      const sidecar = startPruned(
        [
          '--listen=127.0.0.1:0',
          '--admin-listen=127.0.0.1:0',
          `--upstream=http://127.0.0.1:${noApp}`,
          `--mtls-cert-file=${join(certs, 'orders', 'tls.crt')}`,
          `--mtls-key-file=${join(certs, 'orders', 'tls.key')}`,
          `--mtls-ca-file=${join(certs, 'orders', 'ca.crt')}`,
          '--allow=spiffe://example.org/ns/shop/sa/frontend',
        ],
        { opensslConf },
      );
      try {
        const started = await waitForEvent(sidecar, 'started');
        const socket = connect({
          host: '127.0.0.1',
          port: (started.listen as { port: number }).port,
          ...client,
          minVersion: 'TLSv1.3',
          checkServerIdentity: () => undefined,
        });
        let tickets = 0;
        socket.on('session', () => tickets++);
        socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nhost: orders\r\nconnection: close\r\n\r\n'));
        let response = '';
        socket.on('data', (d: Buffer) => (response += d.toString('latin1')));
        // The tickets come right after the handshake, before the answer (a 502: no app here) and the close.
        await once(socket, 'close');
        expect(response).toMatch(/^HTTP\/1\.1 502 /);
        return tickets;
      } finally {
        expect(await stop(sidecar)).toBe(0);
      }
    };
    expect(await ticketsFrom(true)).toBe(1);
    expect(await ticketsFrom(false)).toBe(2);
  });

  it("warms a compile cache as the image's build does, or says this Node has none", async () => {
    const cache = join(app, '..', 'compile-cache');
    await mkdir(cache);
    const warm = join(app, 'dist', 'warm-compile-cache.js');
    const env = { PATH: process.env.PATH ?? '', NODE_COMPILE_CACHE: cache };
    const { stdout } = await run(process.execPath, [warm], { cwd: app, env, timeout: 30_000 });
    const hasCache = 'getCompileCacheDir' in (process.getBuiltinModule('node:module') as object);
    if (!hasCache) {
      expect(stdout).toBe(`Node ${process.version} has no compile cache (Node 22.1 and later do): nothing to warm\n`);
      return;
    }
    expect(stdout).toMatch(/^compile cache: \d+ modules compiled into /m);
    expect((await readdir(cache)).length).toBeGreaterThan(0);
    // Without NODE_COMPILE_CACHE the step fails, naming it, rather than leave the image without a cache.
    const off = run(process.execPath, [warm], { cwd: app, env: { PATH: env.PATH }, timeout: 30_000 });
    await expect(off).rejects.toMatchObject({ stderr: expect.stringMatching(/set NODE_COMPILE_CACHE/) });
  });

  it('runs the injector', async () => {
    const tls = join(app, '..', 'injector-tls');
    await writeServingSecret(tls, await issueServingCertificate(await createWebhookCa()));
    const injector = startPruned([
      'inject-webhook',
      '--listen=127.0.0.1:0',
      `--tls-cert-file=${join(tls, 'tls.crt')}`,
      `--tls-key-file=${join(tls, 'tls.key')}`,
      '--image=spiffe-sidecar:0.1.0',
    ]);
    try {
      await waitForEvent(injector, 'webhook_started');
    } finally {
      expect(await stop(injector)).toBe(0);
    }
  });

  it('the Dockerfile ships this tree: npm ci --omit=dev, dist/, package.json, node dist/main.js as a non-root user', async () => {
    const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
    const stages = dockerfile.split(/^FROM /m).slice(1);
    expect(stages).toHaveLength(5);
    expect(stages[0]).toMatch(
      /RUN npm ci --no-audit --no-fund\n[\s\S]*RUN npm run build && mkdir \/app\/compile-cache\n/,
    );
    expect(stages[1]).toMatch(/RUN npm ci --omit=dev --no-audit --no-fund/);
    const [runtime, cache, image] = stages.slice(2);
    expect(runtime).toMatch(/^gcr\.io\/distroless\/nodejs\$\{NODE_MAJOR\}-debian12:nonroot AS runtime$/m);
    expect(runtime).toMatch(/COPY --from=production-dependencies \/app\/node_modules \.\/node_modules/);
    expect(runtime).toMatch(/COPY --from=build \/app\/dist \.\/dist/);
    expect(runtime).toMatch(/COPY package\.json \.\//);
    expect(runtime).toMatch(/^WORKDIR \/app$/m);
    // The UID the injector sets as runAsUser (runAsNonRoot needs a numeric user to check).
    expect(runtime).toMatch(new RegExp(`^USER ${SIDECAR_UID}:${SIDECAR_UID}$`, 'm'));
    expect(runtime).toMatch(/^ENV NODE_COMPILE_CACHE=\/app\/compile-cache$/m);
    expect(runtime).toMatch(new RegExp(`^ENV OPENSSL_CONF=${IMAGE_OPENSSL_CONF}$`, 'm'));
    // npm run build puts it in dist/, which the runtime stage copies.
    await expect(readFile(join(app, 'dist', 'openssl.cnf'), 'utf8')).resolves.toMatch(/^NumTickets = 1$/m);
    expect(runtime).not.toMatch(/^RUN /m);
    // The compile cache: made on the runtime stage (same node, same files, same user) into a directory that user
    // owns there...
    expect(cache).toMatch(/^runtime AS compile-cache$/m);
    expect(cache.match(/^(RUN|COPY) .*$/gm)).toEqual([
      `COPY --from=build --chown=${SIDECAR_UID}:${SIDECAR_UID} /app/compile-cache ./compile-cache`,
      'RUN ["/nodejs/bin/node", "/app/dist/warm-compile-cache.js"]',
    ]);
    // ...and shipped owned by root, read-only: the sidecar's user cannot rewrite the code later starts run.
    expect(image).toMatch(/^runtime$/m);
    expect(image.match(/^(RUN|COPY|USER) .*$/gm)).toEqual([
      'COPY --from=compile-cache --chown=0:0 --chmod=0555 /app/compile-cache ./compile-cache',
    ]);
    const entrypoint = /^ENTRYPOINT (.*)$/m.exec(image)?.[1];
    expect(JSON.parse(entrypoint ?? 'null')).toEqual(['/nodejs/bin/node', ...IMAGE_NODE_FLAGS, '/app/dist/main.js']);
    expect(dockerfile).not.toMatch(/^HEALTHCHECK/m);
    expect(dockerfile).toMatch(/LABEL org\.opencontainers\.image\.title="spiffe-sidecar"/);
    // Nothing but the build inputs reaches the build context: never a key.
    const ignore = (await readFile(join(ROOT, '.dockerignore'), 'utf8'))
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));
    expect(ignore).toEqual([
      '*',
      '!package.json',
      '!package-lock.json',
      '!tsconfig.json',
      '!tsconfig.build.json',
      '!rolldown.config.js',
      '!src/**',
    ]);
  });
});
