// Outbound TCP (`--outbound LISTEN=tls://HOST:PORT,id=RULE`): app A connects in plain TCP to its sidecar
// on loopback; the sidecar opens mTLS to the remote, verifies it is who the rule names, and only then
// relays bytes. Paired with a `--protocol tcp --proxy-protocol v2` sidecar B, app B learns A's SPIFFE ID.
// A remote that is not who the rule says never receives a byte.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { freePort } from '../helpers/free-port.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { parseProxyV2 } from '../helpers/proxy-protocol-parser.js';
import { startSpireTestSidecar, startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import {
  closedPort,
  type Digest,
  peerGone,
  readAll,
  sha256,
  startTcpApp,
  type TcpApp,
  writeRandom,
} from '../helpers/tcp-echo-app.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';

const A = 'spiffe://example.org/ns/shop/sa/orders';
const C = 'spiffe://example.org/ns/shop/sa/intruder';
const B = 'spiffe://example.org/ns/db/sa/postgres';
const MB = 1024 * 1024;

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
/** What app B saw per connection: the caller's SPIFFE ID (TLV 0xE0) and the payload after the header. */
const arrivals: { id: string; payload: Promise<Digest> }[] = [];
let appB: TcpApp;
let b: TestSidecar;
const cleanups: (() => Promise<void>)[] = [];

async function svidFiles(name: string, svid: IssuedCertificate, bundlePem = ca.certPem) {
  const d = join(dir.path, name);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'tls.crt'), svid.chainPem);
  await writeFile(join(d, 'tls.key'), svid.keyPem);
  await writeFile(join(d, 'ca.crt'), bundlePem);
  return {
    'mtls-cert-file': join(d, 'tls.crt'),
    'mtls-key-file': join(d, 'tls.key'),
    'mtls-ca-file': join(d, 'ca.crt'),
  };
}

/** App B: reads the PROXY v2 header, then echoes and hashes the rest. */
function appBHandler(socket: Socket): void {
  let pending = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    const parsed = parseProxyV2(pending);
    if (!parsed) return;
    socket.off('data', onData);
    const id = parsed.header.tlvs.find((t) => t.type === 0xe0)?.value.toString('utf8') ?? '';
    const first = parsed.rest;
    arrivals.push({ id, payload: hashed(socket, first) });
    socket.write(first);
    socket.pipe(socket);
  };
  socket.on('data', onData);
}

/** A digest of `first` and every later byte until the end. */
function hashed(socket: Socket, first: Buffer): Promise<Digest> {
  const hash = createHash('sha256').update(first);
  let length = first.length;
  const p = new Promise<Digest>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      hash.update(d);
      length += d.length;
    });
    socket.once('end', () => resolve({ length, sha256: hash.digest('hex') }));
    socket.once('error', reject);
  });
  p.catch(() => {});
  return p;
}

async function sidecarWithRoute(name: string, id: string, route: string, extra: Record<string, unknown> = {}) {
  const s = await startTestSidecar({
    ...(await svidFiles(name, await issueSvid(ca, { id }))),
    outbound: [route],
    ...extra,
  });
  cleanups.push(() => s.close());
  return s;
}

/** The app's side: a plain TCP connection to the route's loopback port. */
async function appConnect(sidecar: Pick<TestSidecar, 'outboundAddresses'>): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port: sidecar.outboundAddresses()[0].port, allowHalfOpen: true });
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

/**
 * A TLS server with a valid SVID (of `id`, issued by `issuer`) that records every byte it decrypts.
 * `ended` counts connections that are over on its side (a failed handshake, or a closed TLS socket, which
 * comes after its last byte): once it equals `connections`, `received` is final.
 */
async function impostor(issuer: CertificateAuthority, id: string) {
  const svid = await issueSvid(issuer, { id });
  let received = 0;
  let connections = 0;
  let ended = 0;
  const server: TlsServer = createTlsServer({ cert: svid.chainPem, key: svid.keyPem }, (socket) => {
    socket.on('data', (d: Buffer) => (received += d.length));
    socket.on('error', () => {});
    socket.on('close', () => ended++);
  });
  // TCP connections (the sidecar came), whether or not it completed the handshake on our side.
  server.on('connection', () => connections++);
  server.on('tlsClientError', () => ended++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port, received: () => received, connections: () => connections, ended: () => ended };
}

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  appB = await startTcpApp(appBHandler);
  b = await startTestSidecar({
    protocol: 'tcp',
    'proxy-protocol': 'v2',
    upstream: appB.upstream,
    ...(await svidFiles('b', await issueSvid(ca, { id: B }))),
    allow: [A],
  });
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await b?.close();
  await appB?.close();
  await dir?.remove();
});

describe('outbound tcp routes carry an app’s bytes over mTLS to a verified remote', () => {
  let a: TestSidecar;
  beforeAll(async () => {
    a = await sidecarWithRoute('a', A, `127.0.0.1:0=tls://127.0.0.1:${b.port},id=${B}`);
  });

  it('relays 32 MB both ways, intact, and app B learns A’s verified SPIFFE ID', async () => {
    const before = arrivals.length;
    const socket = await appConnect(a);
    const echoed = readAll(socket);
    const sent = await writeRandom(socket, 32 * MB, true);
    expect(await echoed).toEqual(sent);
    await expect.poll(() => arrivals.length).toBe(before + 1);
    expect(arrivals[before].id).toBe(A);
    expect(await arrivals[before].payload).toEqual(sent);
  }, 60_000);

  it('relays one byte, and the app’s end comes back as an end', async () => {
    const socket = await appConnect(a);
    const echoed = readAll(socket);
    socket.end(Buffer.from([7]));
    expect(await echoed).toEqual({ length: 1, sha256: sha256(Buffer.from([7])) });
  });

  it('bytes the app sends at once wait for the remote’s verification and then arrive, in order', async () => {
    const before = arrivals.length;
    const socket = await appConnect(a);
    const echoed = readAll(socket);
    // Written before the sidecar has even opened TLS to the remote.
    socket.write('first ');
    socket.end('second');
    expect(await echoed).toEqual({ length: 12, sha256: sha256('first second') });
    await expect.poll(() => arrivals.length).toBe(before + 1);
    expect(await arrivals[before].payload).toEqual({ length: 12, sha256: sha256('first second') });
  });

  it('a remote with a valid SVID but the wrong SPIFFE ID never receives a byte', async () => {
    const fake = await impostor(ca, 'spiffe://example.org/ns/db/sa/impostor');
    const route = await sidecarWithRoute('a-wrong', A, `127.0.0.1:0=tls://127.0.0.1:${fake.port},id=${B}`);
    const socket = await appConnect(route);
    socket.on('error', () => {});
    let back = 0;
    socket.on('data', (d: Buffer) => (back += d.length));
    socket.write('password=hunter2\n');
    await peerGone(socket);
    // The remote's side of the connection is over too: a byte sent anyway would have arrived before that.
    await expect.poll(() => fake.connections() > 0 && fake.ended() === fake.connections()).toBe(true);
    expect(back).toBe(0);
    expect(fake.connections()).toBe(1);
    expect(fake.received()).toBe(0);
    await expect
      .poll(() => route.logs.find((l) => l.event === 'outbound_rejected'))
      .toMatchObject({ reason: 'remote_identity_mismatch', expected: B });
  });

  it('a remote from a trust domain we do not trust never receives a byte', async () => {
    const rogueCa = await createDevCa({ trustDomain: 'example.org' });
    const fake = await impostor(rogueCa, B);
    const route = await sidecarWithRoute('a-rogue', A, `127.0.0.1:0=tls://127.0.0.1:${fake.port},id=${B}`);
    const socket = await appConnect(route);
    socket.on('error', () => {});
    socket.write('password=hunter2\n');
    await peerGone(socket);
    await expect.poll(() => fake.connections() > 0 && fake.ended() === fake.connections()).toBe(true);
    expect(fake.connections()).toBe(1);
    expect(fake.received()).toBe(0);
    await expect.poll(() => route.logs.some((l) => l.event === 'outbound_rejected')).toBe(true);
  });

  it('a remote that refuses our certificate: the app’s connection is closed, and the log says why', async () => {
    // `openssl s_server` with B's valid SVID that trusts another CA for its clients: TLS 1.3 lets our side finish
    // the handshake, then OpenSSL's alert (unknown_ca) arrives. (A Node server would close without an alert.)
    const clientCa = await createDevCa({ trustDomain: 'example.org' });
    const files = await svidFiles('strict-remote', await issueSvid(ca, { id: B }), clientCa.certPem);
    const port = await freePort();
    const remote = spawn(
      'openssl',
      [
        's_server',
        '-accept',
        `127.0.0.1:${port}`,
        '-cert',
        files['mtls-cert-file'],
        '-key',
        files['mtls-key-file'],
      ].concat(['-CAfile', files['mtls-ca-file'], '-Verify', '1', '-verify_return_error', '-naccept', '1']),
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    cleanups.push(async () => void remote.kill());
    let output = '';
    await new Promise<void>((resolve, reject) => {
      remote.stdout.on('data', (d: Buffer) => {
        output += d.toString();
        if (output.includes('ACCEPT')) resolve();
      });
      remote.once('exit', (code) => reject(new Error(`openssl s_server exited (${code}): ${output}`)));
    });
    const route = await sidecarWithRoute('a-refused', A, `127.0.0.1:0=tls://127.0.0.1:${port},id=${B}`);
    const socket = await appConnect(route);
    socket.on('error', () => {});
    socket.write('hello?');
    await peerGone(socket);
    await expect
      .poll(() => route.logs.find((l) => l.event === 'outbound_rejected'))
      .toMatchObject({ reason: 'remote_refused_our_certificate', expected: B });
  });

  it('an unreachable remote: the app’s connection is closed', async () => {
    const route = await sidecarWithRoute('a-dead', A, `127.0.0.1:0=tls://127.0.0.1:${await closedPort()},id=${B}`);
    const socket = await appConnect(route);
    socket.on('error', () => {});
    socket.write('hello?');
    await peerGone(socket);
    await expect.poll(() => route.logs.some((l) => l.event === 'outbound_rejected')).toBe(true);
  });

  it('a caller B does not allow is disconnected by B and app B never sees it', async () => {
    const acceptedBefore = appB.accepted();
    const intruder = await sidecarWithRoute('c', C, `127.0.0.1:0=tls://127.0.0.1:${b.port},id=${B}`);
    const socket = await appConnect(intruder);
    socket.on('error', () => {});
    socket.write('DROP TABLE orders;');
    await peerGone(socket);
    await expect
      .poll(() => b.logs.filter((l) => l.event === 'authz').at(-1))
      .toMatchObject({ decision: 'deny', peer: C, protocol: 'tcp' });
    expect(appB.accepted()).toBe(acceptedBefore);
  });

  it('closes a relay idle for --idle-timeout', async () => {
    const idle = await sidecarWithRoute('a-idle', A, `127.0.0.1:0=tls://127.0.0.1:${b.port},id=${B}`, {
      'idle-timeout': '1s',
    });
    const socket = await appConnect(idle);
    socket.on('error', () => {});
    const first = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write('x');
    await first;
    const quietSince = performance.now();
    await peerGone(socket);
    const quiet = performance.now() - quietSince;
    expect(quiet).toBeGreaterThan(800);
    expect(quiet).toBeLessThan(5000);
  }, 15_000);

  it('in SPIRE mode, an outbound-only sidecar with a tls:// route is not ready before its first SVID', async () => {
    const api = await TestWorkloadApi.start(join(dir.path, 'agent.sock'));
    cleanups.push(() => api.close());
    const adminPort = await closedPort();
    const starting = startSpireTestSidecar({
      'workload-api-socket': api.address,
      'admin-listen': `127.0.0.1:${adminPort}`,
      outbound: [`127.0.0.1:0=tls://127.0.0.1:${b.port},id=${B}`],
    });
    starting.then((s) => cleanups.push(() => s.close())).catch(() => {});
    const ready = async () => {
      try {
        return (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status;
      } catch {
        return 0;
      }
    };
    // The admin port answers (it starts first); without an SVID the route cannot prove who we are.
    await expect.poll(ready).not.toBe(0);
    expect(await ready()).toBe(503);
    api.setX509({ svids: [{ spiffeId: A, svid: await issueSvid(ca, { id: A }), bundlePem: ca.certPem }] });
    const s = await starting;
    await expect.poll(ready).toBe(200);
    const before = arrivals.length;
    const socket = await appConnect(s);
    const echoed = readAll(socket);
    socket.end('after the SVID');
    expect(await echoed).toEqual({ length: 14, sha256: sha256('after the SVID') });
    await expect.poll(() => arrivals.length).toBe(before + 1);
    expect(arrivals[before].id).toBe(A);
  }, 30_000);
});
