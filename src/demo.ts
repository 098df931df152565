// `npm run demo`: a dev trust domain in a temp dir, a demo app, the real sidecar process in front of it,
// and three callers: allowed, denied, and one without a certificate. Exits 0 when all behave as expected.
// `npm run demo -- --mode jwt|outbound|tcp`: the same for JWT mode, two services on one host, and TCP
// mode (src/dev/demo-*.ts); `--mode mtls` is the default.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevCa, type IssuedCertificate, issueSvid, saveSvid } from './certs/dev-ca.js';

const TRUST_DOMAIN = 'example.org';
const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/orders`;
const ALLOWED_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/frontend`;
const DENIED_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/batch-job`;

const say = (text = '') => process.stdout.write(`${text}\n`);

/** The demo app: answers with the identity headers the sidecar gave it. */
function startApp(): Promise<{ port: number; close: () => void }> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        app: 'orders',
        'x-spiffe-id': req.headers['x-spiffe-id'],
        'x-forwarded-client-cert': req.headers['x-forwarded-client-cert'],
      }),
    );
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ port: (server.address() as AddressInfo).port, close: () => server.close() }),
    ),
  );
}

function startSidecar(args: string[]): Promise<{ child: ChildProcess; port: number; audit: string[] }> {
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const audit: string[] = [];
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout?.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const entry = JSON.parse(line) as Record<string, unknown>;
        if (entry.event === 'started') resolve({ child, port: (entry.listen as AddressInfo).port, audit });
        if (entry.event === 'authz' || entry.event === 'peer_rejected') audit.push(line);
      }
    });
    child.on('exit', (code) => reject(new Error(`the sidecar exited with code ${code}: ${stderr.trim()}`)));
  });
}

function call(port: number, svid: IssuedCertificate | undefined): Promise<string> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/orders/42',
        // A caller trying to claim another identity: the sidecar replaces this header.
        headers: { 'x-spiffe-id': 'spiffe://example.org/ns/demo/sa/admin' },
        cert: svid?.chainPem,
        key: svid?.keyPem,
        // The demo client does not check the server; a real peer sidecar verifies its SPIFFE ID.
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve(`HTTP ${res.statusCode} ${body}`));
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`connection rejected (${err.code ?? err.message})`));
    req.end();
  });
}

/** SIGTERM, then the exit awaited (SIGKILL after 5 s): the demo leaves no sidecar running. */
async function stopped(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function mtlsDemo(): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-sidecar-demo-'));
  const app = await startApp();
  let sidecar: ChildProcess | undefined;
  try {
    say(`1. a dev trust domain "${TRUST_DOMAIN}" in ${dir}`);
    const ca = await createDevCa({ trustDomain: TRUST_DOMAIN });
    const [server, allowed, denied] = await Promise.all(
      [SERVER_ID, ALLOWED_ID, DENIED_ID].map((id) => issueSvid(ca, { id, lifetimeMs: 15 * 60_000 })),
    );
    await saveSvid(server, ca.certPem, join(dir, 'orders'));
    say(`   SVIDs: ${SERVER_ID} (the sidecar), ${ALLOWED_ID}, ${DENIED_ID}`);
    say(`2. the demo app "orders" on http://127.0.0.1:${app.port}`);
    const args = [
      '--listen',
      '127.0.0.1:0',
      '--admin-listen',
      '127.0.0.1:0',
      '--upstream',
      `http://127.0.0.1:${app.port}`,
      '--mtls-cert-file',
      join(dir, 'orders', 'tls.crt'),
      '--mtls-key-file',
      join(dir, 'orders', 'tls.key'),
      '--mtls-ca-file',
      join(dir, 'orders', 'ca.crt'),
      '--allow',
      ALLOWED_ID,
    ];
    const started = await startSidecar(args);
    sidecar = started.child;
    say(`3. the sidecar in front of it on https://127.0.0.1:${started.port}:`);
    say(`   spiffe-sidecar ${args.join(' ')}`);
    say();
    const answers = {
      allowed: await call(started.port, allowed),
      denied: await call(started.port, denied),
      anonymous: await call(started.port, undefined),
    };
    say(`caller ${ALLOWED_ID} (allowed), sending a spoofed x-spiffe-id:`);
    say(`   ${answers.allowed}`);
    say(`caller ${DENIED_ID} (not allowed):`);
    say(`   ${answers.denied}`);
    say('caller without a client certificate:');
    say(`   ${answers.anonymous}`);
    await new Promise((r) => setTimeout(r, 200));
    say();
    say('the sidecar audit log:');
    for (const line of started.audit) say(`   ${line}`);
    const ok =
      answers.allowed.startsWith('HTTP 200') &&
      answers.allowed.includes(`"x-spiffe-id":"${ALLOWED_ID}"`) &&
      answers.denied.startsWith('HTTP 403') &&
      answers.anonymous.startsWith('connection rejected');
    say();
    say(ok ? 'demo passed: the app saw only the verified caller.' : 'demo FAILED: see the answers above.');
    return ok;
  } finally {
    if (sidecar) await stopped(sidecar);
    app.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const MODES = ['mtls', 'jwt', 'outbound', 'tcp'] as const;
const USAGE = `usage: npm run demo [-- --mode ${MODES.join('|')}] (default mtls)`;

/** `--mode M` or `--mode=M`; anything else is a usage error. */
function modeOf(args: string[]): (typeof MODES)[number] {
  let mode: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--mode' && i + 1 < args.length && mode === undefined) mode = args[++i];
    else if (arg.startsWith('--mode=') && mode === undefined) mode = arg.slice('--mode='.length);
    else throw new Error(`unexpected argument ${JSON.stringify(arg)}; ${USAGE}`);
  }
  if (mode === undefined) return 'mtls';
  if (!(MODES as readonly string[]).includes(mode)) throw new Error(`--mode ${JSON.stringify(mode)}: ${USAGE}`);
  return mode as (typeof MODES)[number];
}

async function main(): Promise<boolean> {
  const mode = modeOf(process.argv.slice(2));
  if (mode === 'mtls') return mtlsDemo();
  const run = new (await import('./dev/demo-kit.js')).DemoRun();
  try {
    if (mode === 'jwt') return await (await import('./dev/demo-jwt.js')).jwtDemo(run);
    if (mode === 'outbound') return await (await import('./dev/demo-outbound.js')).outboundDemo(run);
    return await (await import('./dev/demo-tcp.js')).tcpDemo(run);
  } finally {
    await run.close();
  }
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
