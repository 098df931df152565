// `dev workload-api` as a real process in place of a SPIRE agent, with real sidecars in SPIRE mode on its
// socket: the served X509-SVID is the sidecar's identity for mTLS (and outbound), renewed at half its
// lifetime and pushed to the open stream; JWT-SVIDs it mints for an outbound route, and those of
// `dev token --dir CA_DIR --spiffe-id`, verify against the JWT bundle it streams. Calls without the
// security header are refused; bad flags, a busy socket and foreign IDs are refused naming the flag;
// SIGTERM ends it with status 0 and removes the socket, and a stale socket of a killed server is replaced.
import { existsSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:tls';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type IssuedCertificate, issueSvid, loadDevCa } from '../../src/certs/dev-ca.js';
import { workloadApiDefinition } from '../../src/identity/workload-api-definition.js';
import { requestVia } from '../helpers/client.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { tempDir } from '../helpers/pki.js';
import { jwtSidecarArgs, type Running, runCli, startCli, waitForEvent } from '../helpers/process.js';
import { runDev, startDev, stopDev, waitForOutput } from './dev-cli.js';

const ORDERS = 'spiffe://example.org/ns/prod/sa/orders';
const FRONTEND = 'spiffe://example.org/ns/prod/sa/frontend';

let dir: Awaited<ReturnType<typeof tempDir>>;
let caDir: string;
let ordersSocket: string;
let ordersApi: Running;
let frontendApi: Running;
let app: EchoApp;
let frontendSvid: IssuedCertificate;
const sidecars: Running[] = [];
const ports: { mtls: number; jwt: number; outboundMtls: number; outboundJwt: number } = {
  mtls: 0,
  jwt: 0,
  outboundMtls: 0,
  outboundJwt: 0,
};
let mtls: Running;

async function sidecar(args: string[]): Promise<{ running: Running; started: Record<string, unknown> }> {
  const running = startCli(args);
  sidecars.push(running);
  return { running, started: await waitForEvent(running, 'started', 20_000) };
}

const portOf = (address: unknown) => (address as { port: number }).port;

/** The serial of the certificate a new TLS connection to the port is served with. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      cert: frontendSvid.chainPem,
      key: frontendSvid.keyPem,
      rejectUnauthorized: false,
    });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().serialNumber.toLowerCase());
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

beforeAll(async () => {
  dir = await tempDir();
  caDir = join(dir.path, 'dev-ca');
  const init = await runCli(['certs', 'init', '--trust-domain', 'example.org', '--out', caDir]);
  expect(init.code, init.stderr).toBe(0);
  frontendSvid = await issueSvid(await loadDevCa(caDir), { id: FRONTEND });
  ordersSocket = join(dir.path, 'orders.sock');
  const frontendSocket = join(dir.path, 'frontend.sock');
  ordersApi = startDev(['workload-api', '--socket', ordersSocket, '--ca', caDir, '--id', ORDERS, '--ttl', '10s']);
  frontendApi = startDev(['workload-api', '--socket', `unix://${frontendSocket}`, '--ca', caDir, '--id', FRONTEND]);
  await Promise.all([ordersApi, frontendApi].map((api) => waitForOutput(api, 'serving until SIGTERM or SIGINT')));
  app = await startEchoApp();
  const m = await sidecar([
    ...['--listen', '127.0.0.1:0', '--upstream', app.url],
    ...['--workload-api-socket', `unix://${ordersSocket}`, '--allow', FRONTEND],
  ]);
  mtls = m.running;
  ports.mtls = portOf(m.started.listen);
  const j = await sidecar(
    jwtSidecarArgs(app.url, '--workload-api-socket', `unix://${ordersSocket}`, '--allow', FRONTEND),
  );
  ports.jwt = portOf(j.started.listen);
  const o = await sidecar([
    ...['--workload-api-socket', `unix://${frontendSocket}`],
    ...['--outbound', `127.0.0.1:0=https://127.0.0.1:${ports.mtls},id=${ORDERS}`],
    ...['--outbound', `127.0.0.1:0=http://127.0.0.1:${ports.jwt},auth=jwt,audience=orders`],
  ]);
  [ports.outboundMtls, ports.outboundJwt] = (o.started.outbound as { listen: unknown }[]).map((r) => portOf(r.listen));
}, 60_000);

afterAll(async () => {
  for (const s of sidecars) s.child.kill('SIGTERM');
  await Promise.all(sidecars.map((s) => s.exited));
  for (const api of [ordersApi, frontendApi]) if (api) await stopDev(api);
  await app?.close();
  await dir?.remove();
});

describe('dev workload-api runs SPIRE mode on one machine', () => {
  it('prints the socket as --workload-api-socket takes it, and makes the socket 0600', () => {
    expect(ordersApi.stdout()).toContain(`dev Workload API for ${ORDERS} on unix://${ordersSocket}`);
    expect(ordersApi.stdout()).toContain(`sidecar flag: --workload-api-socket unix://${ordersSocket}`);
    expect(statSync(ordersSocket).mode & 0o777).toBe(0o600);
  });

  it('the sidecar serves mTLS with the SVID it streams, and admits the caller the rules name', async () => {
    const started = mtls
      .stdout()
      .split('\n')
      .find((l) => l.includes('"event":"started"')) as string;
    expect(JSON.parse(started)).toMatchObject({ source: 'workload-api', spiffe_id: ORDERS });
    const res = await requestVia(ports.mtls, frontendSvid, { path: '/orders/1' });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body) as { headers: Record<string, string> };
    expect(seen.headers['x-spiffe-id']).toBe(FRONTEND);
    expect(seen.headers['x-forwarded-client-cert']).toContain(`By=${ORDERS};`);
  });

  it('an outbound sidecar on a second dev Workload API of the same CA carries its identity over mTLS', async () => {
    const res = await fetch(`http://127.0.0.1:${ports.outboundMtls}/orders/2`);
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { headers: Record<string, string> };
    expect(seen.headers['x-spiffe-id']).toBe(FRONTEND);
  });

  it('JWT-SVIDs it mints (outbound auth=jwt) verify against the JWT bundle it streams', async () => {
    const res = await fetch(`http://127.0.0.1:${ports.outboundJwt}/orders/3`);
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { headers: Record<string, string> };
    expect(seen.headers['x-spiffe-id']).toBe(FRONTEND);
    expect(seen.headers['x-jwt-subject']).toBe(FRONTEND);
  });

  it('so do those of dev token --dir CA_DIR --spiffe-id: one JWT key per dev trust domain', async () => {
    const token = await runDev(['token', '--dir', caDir, '--spiffe-id', FRONTEND, '--aud', 'orders']);
    expect(token.code, token.stderr).toBe(0);
    const ok = await fetch(`http://127.0.0.1:${ports.jwt}/`, {
      headers: { authorization: `Bearer ${token.stdout.trim()}` },
    });
    expect(ok.status).toBe(200);
  });

  it('the SVID is renewed at half its lifetime and the sidecar serves the new one to new connections', async () => {
    const first = String((await waitForEvent(mtls, 'identity_updated')).serial).toLowerCase();
    await waitForOutput(ordersApi, `renewed ${ORDERS}: serial`, 20_000);
    const renewals = () => [...ordersApi.stdout().matchAll(/renewed \S+: serial ([0-9a-f]+)/g)].map((m) => m[1]);
    expect(renewals()).not.toContain(first);
    const [renewed] = renewals();
    // The sidecar logs the renewed SVID as its identity (polled: it arrives on the open stream).
    const deadline = Date.now() + 10_000;
    while (!mtls.stdout().includes(`"serial":"${renewed}"`)) {
      expect(Date.now(), 'the sidecar took the renewed SVID').toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 25));
    }
    const served = (await servedSerial(ports.mtls)).replace(/^0+/, '');
    expect(renewals().map((s) => s.replace(/^0+/, ''))).toContain(served);
  }, 30_000);

  it('refuses calls without the security header, foreign JWT-SVID IDs and empty audiences', async () => {
    const Service = workloadApiDefinition().SpiffeWorkloadAPI as grpc.ServiceClientConstructor;
    const client = new Service(`unix://${ordersSocket}`, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, (...args: unknown[]) => unknown>;
    const unary = (metadata: grpc.Metadata, request: object) =>
      new Promise<grpc.ServiceError | null>((resolve) =>
        client.FetchJWTSVID(request, metadata, (err: grpc.ServiceError | null) => resolve(err)),
      );
    const withHeader = new grpc.Metadata();
    withHeader.set('workload.spiffe.io', 'true');
    try {
      expect((await unary(new grpc.Metadata(), { audience: ['orders'] }))?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect((await unary(withHeader, { audience: [] }))?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect((await unary(withHeader, { audience: ['orders'], spiffe_id: FRONTEND }))?.code).toBe(
        grpc.status.PERMISSION_DENIED,
      );
      expect(await unary(withHeader, { audience: ['orders'], spiffe_id: ORDERS })).toBeNull();
      const stream = client.FetchX509SVID({}, new grpc.Metadata()) as grpc.ClientReadableStream<unknown>;
      const code = await new Promise<number>((resolve) =>
        stream.on('error', (e: grpc.ServiceError) => resolve(e.code)),
      );
      expect(code).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      client.close();
    }
  });
});

describe('dev workload-api refuses what cannot work, naming the flag', () => {
  const cases: [string, () => string[], RegExp][] = [
    [
      'an --id of another trust domain',
      () => ['workload-api', '--socket', join(dir.path, 'a.sock'), '--ca', caDir, '--id', 'spiffe://other.org/x'],
      /ERR_CONFIG_INVALID: --id spiffe:\/\/other.org\/x: the CA in .* issues IDs of trust domain "example.org" only/,
    ],
    [
      'a --socket that is a file',
      () => ['workload-api', '--socket', join(dir.path, 'plain-file'), '--ca', caDir, '--id', ORDERS],
      /ERR_CONFIG_INVALID: --socket .*plain-file: the path exists and is not a socket/,
    ],
    [
      'a --socket someone serves on',
      () => ['workload-api', '--socket', ordersSocket, '--ca', caDir, '--id', ORDERS],
      /ERR_LISTEN: --socket .*orders.sock: something is already serving on this socket/,
    ],
    [
      'a --ca without a CA',
      () => ['workload-api', '--socket', join(dir.path, 'b.sock'), '--ca', join(dir.path, 'none'), '--id', ORDERS],
      /ERR_FILE_READ: --ca .*none: /,
    ],
    [
      'a --ttl too short to renew',
      () => ['workload-api', '--socket', join(dir.path, 'c.sock'), '--ca', caDir, '--id', ORDERS, '--ttl', '5s'],
      /ERR_CONFIG_INVALID: --ttl: at least 10s/,
    ],
    [
      'no --id',
      () => ['workload-api', '--socket', join(dir.path, 'd.sock'), '--ca', caDir],
      /ERR_CONFIG_MISSING: --id is required/,
    ],
  ];
  beforeAll(() => writeFile(join(dir.path, 'plain-file'), 'not a socket'));
  it.each(cases)('%s', async (_name, args, message) => {
    const result = await runDev(args());
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/^spiffe-sidecar: ERR_[A-Z_]+: [^\n]+\n$/);
  });

  it('a stale socket left by a killed server is replaced; SIGTERM exits 0 and removes the socket', async () => {
    const socket = join(dir.path, 'stale.sock');
    const args = ['workload-api', '--socket', socket, '--ca', caDir, '--id', ORDERS];
    const killed = startDev(args);
    await waitForOutput(killed, 'serving until');
    expect(await stopDev(killed, 'SIGKILL')).toMatchObject({ signal: 'SIGKILL' });
    expect(existsSync(socket)).toBe(true);
    const again = startDev(args);
    await waitForOutput(again, 'serving until');
    expect(await stopDev(again, 'SIGTERM')).toMatchObject({ code: 0, signal: null });
    expect(existsSync(socket)).toBe(false);
  });
});
