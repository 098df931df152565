// `--protocol tcp`: after mTLS and the allow rules, bytes are relayed both ways with back-pressure and
// half-close, to a TCP or unix-socket app; an idle relay is closed; a denied peer never reaches the app.
// Every transfer is checked by SHA-256 on both ends.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import type { RawOptions } from '../../src/config.js';
import type { ClientCert } from '../helpers/client.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startSpireTestSidecar, startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';
import {
  closed,
  closedPort,
  peerGone,
  connectTls,
  connectTlsResettable,
  type Digest,
  readAll,
  sha256,
  startTcpApp,
  type TcpApp,
  writeRandom,
} from '../helpers/tcp-echo-app.js';

const SERVER_ID = 'spiffe://example.org/ns/db/sa/postgres';
const ALLOWED_ID = 'spiffe://example.org/ns/shop/sa/orders';
const DENIED_ID = 'spiffe://example.org/ns/shop/sa/stranger';
const PARTNER_ID = 'spiffe://partner.org/ns/shop/sa/orders';
const MB = 1024 * 1024;

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let files: ServingFiles & { partnerBundleFile: string };
let allowed: IssuedCertificate;
let denied: IssuedCertificate;
let partner: IssuedCertificate;
let foreign: IssuedCertificate;
/** Per connection the app accepted: a digest of every byte it received, once the caller ended. */
let received: Promise<Digest>[];
let app: TcpApp;
let sidecar: TestSidecar;
const cleanups: (() => Promise<void>)[] = [];

/** The app echoes every byte and records what it received. */
function hashingEcho(socket: Socket): void {
  received.push(quiet(readAll(socket)));
  socket.pipe(socket);
}

/** The promise, with a rejection nobody awaited not reported as unhandled (a test that awaits it still sees it). */
function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** An app handler for one test: the default app delegates its next connections here. */
let handler: (socket: Socket) => void = hashingEcho;

async function tcpSidecar(upstream: string, extra: RawOptions = {}): Promise<TestSidecar> {
  const started = await startTestSidecar({
    protocol: 'tcp',
    upstream,
    'mtls-cert-file': files.certFile,
    'mtls-key-file': files.keyFile,
    'mtls-ca-file': files.caFile,
    'federated-bundle': [`partner.org=${files.partnerBundleFile}`],
    allow: [ALLOWED_ID],
    ...extra,
  });
  cleanups.push(() => started.close());
  return started;
}

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  const partnerCa = await createDevCa({ trustDomain: 'partner.org' });
  const strangerCa = await createDevCa({ trustDomain: 'elsewhere.org' });
  const serving = await writeServingFiles(dir.path, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  const partnerBundleFile = join(dir.path, 'partner.org.pem');
  await writeFile(partnerBundleFile, partnerCa.certPem);
  files = { ...serving, partnerBundleFile };
  [allowed, denied, partner, foreign] = await Promise.all([
    issueSvid(ca, { id: ALLOWED_ID }),
    issueSvid(ca, { id: DENIED_ID }),
    issueSvid(partnerCa, { id: PARTNER_ID }),
    issueSvid(strangerCa, { id: 'spiffe://elsewhere.org/ns/shop/sa/orders' }),
  ]);
  received = [];
  app = await startTcpApp((socket) => handler(socket));
  sidecar = await tcpSidecar(app.upstream);
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await app?.close();
  await dir?.remove();
});

/** What a caller sees of a connection the sidecar refuses: whether it handshook, and any byte that came back. */
async function attempt(port: number, cert: ClientCert | undefined) {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    cert: cert?.chainPem,
    key: cert?.keyPem,
    rejectUnauthorized: false,
  });
  let handshook = false;
  let bytes = 0;
  socket.on('secureConnect', () => {
    handshook = true;
    socket.write('SELECT secret FROM vault;\n');
  });
  socket.on('data', (d: Buffer) => (bytes += d.length));
  socket.on('error', () => {});
  const stayedOpen = await Promise.race([
    closed(socket).then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 5000)),
  ]);
  socket.destroy();
  return { handshook, bytes, stayedOpen };
}

describe('tcp mode relays bytes both ways after mTLS and only for allowed peers', () => {
  it('relays 100 MB through an echo app, intact both ways (SHA-256 at the app and back at the caller)', async () => {
    const before = received.length;
    const client = await connectTls(sidecar.port, allowed);
    const back = readAll(client);
    const sent = await writeRandom(client, 100 * MB, true);
    const echoed = await back;
    expect(received.length).toBe(before + 1);
    expect(await received[before]).toEqual(sent);
    // Echoed completely, then ended: the app's end came back after ours (half-close both ways).
    expect(echoed).toEqual(sent);
    await closed(client);
  }, 60_000);

  it('relays a single byte each way, without waiting for more', async () => {
    const client = await connectTls(sidecar.port, allowed);
    const first = new Promise<Buffer>((resolve) => client.once('data', resolve));
    client.write(Buffer.from([0x2a]));
    // The byte comes back while the connection is still open in both directions (no batching).
    expect(await first).toEqual(Buffer.from([0x2a]));
    const rest = readAll(client);
    client.end();
    expect((await rest).length).toBe(0);
    expect(await received.at(-1)).toEqual({ length: 1, sha256: sha256(Buffer.from([0x2a])) });
  });

  it('carries a 1-byte connection that ends at once: the byte, then both ends close', async () => {
    const client = await connectTls(sidecar.port, allowed);
    const back = readAll(client);
    client.end(Buffer.from('z'));
    const echoed = await back;
    expect(echoed).toEqual({ length: 1, sha256: sha256('z') });
    await closed(client);
  });

  it('is full duplex: the caller and the app each send 24 MB while receiving the other 24 MB', async () => {
    let appSent: Promise<Digest> | undefined;
    let appReceived: Promise<Digest> | undefined;
    handler = (socket) => {
      appReceived = readAll(socket);
      appSent = writeRandom(socket, 24 * MB, true);
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      let firstByteAt = 0;
      client.once('data', () => (firstByteAt = performance.now()));
      const fromApp = readAll(client);
      const sent = await writeRandom(client, 24 * MB, false);
      const sendDoneAt = performance.now();
      client.end();
      const got = await fromApp;
      expect(appSent).toBeDefined();
      expect(got).toEqual(await appSent);
      expect(await appReceived).toEqual(sent);
      // Both directions were moving at once: the app's bytes arrived while the caller was still sending.
      expect(firstByteAt).toBeGreaterThan(0);
      expect(firstByteAt).toBeLessThan(sendDoneAt);
      await closed(client);
    } finally {
      handler = hashingEcho;
    }
  }, 60_000);

  it('half-close by the caller: it ends after sending and still receives the whole answer', async () => {
    let answer: Digest | undefined;
    handler = (socket) => {
      const got = readAll(socket);
      // The app answers only after the caller's end reached it.
      void got.then(async (digest) => {
        socket.write(`${digest.sha256}\n`);
        answer = await writeRandom(socket, 3 * MB, true);
      });
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      const chunks: Buffer[] = [];
      client.on('data', (d: Buffer) => chunks.push(d));
      const ended = new Promise<void>((resolve) => client.once('end', resolve));
      const sent = await writeRandom(client, 5 * MB, true);
      await ended;
      const all = Buffer.concat(chunks);
      const nl = all.indexOf(0x0a);
      expect(all.subarray(0, nl).toString()).toBe(sent.sha256);
      const body = all.subarray(nl + 1);
      expect({ length: body.length, sha256: sha256(body) }).toEqual(answer);
      await closed(client);
    } finally {
      handler = hashingEcho;
    }
  }, 30_000);

  it('half-close by the app: it ends first, and the caller keeps sending until it is done', async () => {
    let greeting: Digest | undefined;
    let appReceived: Promise<Digest> | undefined;
    let appSocket: Socket | undefined;
    handler = (socket) => {
      appSocket = socket;
      appReceived = readAll(socket);
      void writeRandom(socket, 2 * MB, true).then((d) => (greeting = d));
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      const fromApp = await readAll(client);
      // The app has said all it will say; its side is closed, the caller's is open.
      expect(fromApp).toEqual(greeting);
      expect(client.writable).toBe(true);
      const sent = await writeRandom(client, 4 * MB, true);
      expect(await appReceived).toEqual(sent);
      await closed(client);
      await expect.poll(() => appSocket?.closed).toBe(true);
    } finally {
      handler = hashingEcho;
    }
  }, 30_000);

  it('applies back-pressure: an app that stops reading stalls the caller instead of filling our memory', async () => {
    let appSocket: Socket | undefined;
    handler = (socket) => {
      appSocket = socket;
      received.push(quiet(readAll(socket)));
      socket.pause();
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      await expect.poll(() => appSocket).toBeDefined();
      appSocket!.pause();
      // Write (from one 1 MiB block, as fast as the socket takes it) until a write waits more than a second.
      const block = Buffer.alloc(MB, 0x5a);
      let pushed = 0;
      let stalled = false;
      while (pushed < 400 * MB) {
        pushed += block.length;
        if (!client.write(block)) {
          const drained = await Promise.race([
            new Promise<boolean>((resolve) => client.once('drain', () => resolve(true))),
            new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000)),
          ]);
          if (!drained) {
            stalled = true;
            break;
          }
        }
      }
      const heldUp = pushed;
      expect(stalled).toBe(true);
      // Kernel buffers hold some (both hops); a relay without back-pressure would have taken all 400 MB.
      expect(heldUp).toBeLessThan(64 * MB);
      // Let the app read: every byte arrives, in order.
      const back = readAll(client);
      client.once('drain', () => client.end());
      appSocket!.resume();
      const got = await received.at(-1)!;
      expect(got.length).toBe(heldUp);
      const expected = sha256(Buffer.concat(new Array<Buffer>(heldUp / MB).fill(block)));
      expect(got.sha256).toBe(expected);
      appSocket!.end();
      await back;
    } finally {
      handler = hashingEcho;
    }
  }, 60_000);

  it('passes a caller that vanishes on to the app: its FIN as end, its reset as a closed connection', async () => {
    let appSocket: Socket | undefined;
    handler = (socket) => {
      appSocket = socket;
      socket.on('data', () => {});
    };
    try {
      // FIN: the app reads the end of the stream (it may still answer: that is half-close).
      const finner = await connectTls(sidecar.port, allowed);
      finner.write('partial');
      await expect.poll(() => appSocket).toBeDefined();
      const first = appSocket!;
      const appEnded = new Promise<void>((resolve) => first.once('end', resolve));
      finner.destroy();
      await appEnded;
      // Once the app writes to a caller that is gone (the caller's host answers with a reset), the relay
      // is torn down, the app's side included.
      const knock = setInterval(() => first.write('anyone there?'), 100);
      try {
        await expect.poll(() => first.closed, { timeout: 5000 }).toBe(true);
      } finally {
        clearInterval(knock);
      }

      // RST (a crashed peer): the app's connection is closed at once.
      const resetter = await connectTlsResettable(sidecar.port, allowed);
      resetter.tls.on('error', () => {});
      resetter.tls.write('partial');
      await expect.poll(() => appSocket !== first).toBe(true);
      const second = appSocket!;
      const gone = peerGone(second);
      resetter.tcp.resetAndDestroy();
      await gone;
      const writes = setInterval(() => second.write('x'), 100);
      try {
        await expect.poll(() => second.closed, { timeout: 5000 }).toBe(true);
      } finally {
        clearInterval(writes);
      }
    } finally {
      handler = hashingEcho;
    }
  });

  it('disconnects the caller when the app resets its connection', async () => {
    let appSocket: Socket | undefined;
    handler = (socket) => {
      appSocket = socket;
      socket.on('data', () => {});
    };
    try {
      const client = await connectTls(sidecar.port, allowed);
      client.on('error', () => {});
      client.write('hello');
      await expect.poll(() => appSocket).toBeDefined();
      appSocket!.resetAndDestroy();
      await peerGone(client);
    } finally {
      handler = hashingEcho;
    }
  });

  it('writes an audit line per connection with protocol tcp, the peer and the decision', async () => {
    const client = await connectTls(sidecar.port, allowed);
    client.end('x');
    await readAll(client);
    const line = sidecar.logs.filter((l) => l.event === 'authz').at(-1);
    expect(line).toMatchObject({ protocol: 'tcp', peer: ALLOWED_ID, decision: 'allow', auth: 'mtls' });
  });

  describe('a denied peer never reaches the app', () => {
    /** An app and a sidecar of their own: the app's count of accepted connections starts at 0. */
    let guardedApp: TcpApp;
    let guarded: TestSidecar;
    beforeAll(async () => {
      guardedApp = await startTcpApp();
      cleanups.push(() => guardedApp.close());
      guarded = await tcpSidecar(guardedApp.upstream);
    });

    async function expectNeverReached(cert: ClientCert | undefined, logged: Record<string, unknown>) {
      const logsBefore = guarded.logs.length;
      const seen = await attempt(guarded.port, cert);
      expect(seen.stayedOpen).toBe(false);
      expect(seen.bytes).toBe(0);
      await expect
        .poll(() => guarded.logs.slice(logsBefore).find((l) => l.event === logged.event))
        .toMatchObject(logged);
      // Had the sidecar dialled the app, the app would have accepted by now.
      await new Promise((r) => setTimeout(r, 200));
      expect(guardedApp.accepted()).toBe(0);
      return seen;
    }

    it('a peer of our trust domain with a SPIFFE ID the rules do not allow', async () => {
      const seen = await expectNeverReached(denied, {
        event: 'authz',
        decision: 'deny',
        peer: DENIED_ID,
        protocol: 'tcp',
      });
      // The TLS handshake itself succeeded: it is the allow rule that closed the connection.
      expect(seen.handshook).toBe(true);
    });

    it('a peer of a federated trust domain that no rule names', async () => {
      await expectNeverReached(partner, { event: 'authz', decision: 'deny', peer: PARTNER_ID });
    });

    it('a peer from a trust domain we do not trust at all', async () => {
      await expectNeverReached(foreign, { event: 'peer_rejected' });
    });

    it('a peer without a certificate', async () => {
      await expectNeverReached(undefined, { event: 'peer_rejected', reason: 'ERR_NO_CLIENT_CERT' });
    });

    it('sanity: an allowed peer of the same sidecar is the app’s first and only connection', async () => {
      const client = await connectTls(guarded.port, allowed);
      const back = readAll(client);
      client.end('ok');
      expect(await back).toEqual({ length: 2, sha256: sha256('ok') });
      expect(guardedApp.accepted()).toBe(1);
    });
  });

  it('relays to a unix socket app (--upstream unix:///path)', async () => {
    const unixReceived: Promise<Digest>[] = [];
    const unixApp = await startTcpApp(
      (socket) => {
        unixReceived.push(readAll(socket));
        socket.pipe(socket);
      },
      { path: join(dir.path, 'app.sock') },
    );
    cleanups.push(() => unixApp.close());
    const viaUnix = await tcpSidecar(unixApp.upstream);
    const client = await connectTls(viaUnix.port, allowed);
    const back = readAll(client);
    const sent = await writeRandom(client, 8 * MB, true);
    const echoed = await back;
    expect(await unixReceived[0]).toEqual(sent);
    expect(echoed).toEqual(sent);

    const tiny = await connectTls(viaUnix.port, allowed);
    const one = readAll(tiny);
    tiny.end(Buffer.from([0]));
    expect((await one).length).toBe(1);
    expect(unixApp.accepted()).toBe(2);
  }, 30_000);

  describe('an unreachable app: the caller is disconnected', () => {
    async function expectDisconnected(upstream: string) {
      const dead = await tcpSidecar(upstream);
      const client = await connectTls(dead.port, allowed);
      client.on('error', () => {});
      let bytes = 0;
      client.on('data', (d: Buffer) => (bytes += d.length));
      client.write('hello?');
      const started = performance.now();
      await peerGone(client);
      expect(performance.now() - started).toBeLessThan(5000);
      expect(bytes).toBe(0);
      await expect.poll(() => dead.logs.some((l) => l.event === 'upstream_error')).toBe(true);
    }

    it('a TCP port where nothing listens', async () => {
      await expectDisconnected(`tcp://127.0.0.1:${await closedPort()}`);
    });

    it('a unix socket path that does not exist', async () => {
      await expectDisconnected(`unix://${join(dir.path, 'nobody-home.sock')}`);
    });
  });

  describe('--idle-timeout 1s', () => {
    let idle: TestSidecar;
    beforeAll(async () => {
      idle = await tcpSidecar(app.upstream, { 'idle-timeout': '1s' });
    });

    it('closes a relay on which nothing moves, and the app connection with it', async () => {
      const client = await connectTls(idle.port, allowed);
      client.on('error', () => {});
      const first = new Promise<void>((resolve) => client.once('data', () => resolve()));
      client.write('x');
      await first;
      const appSocket = app.sockets.at(-1)!;
      const quietSince = performance.now();
      await peerGone(client);
      const quiet = performance.now() - quietSince;
      expect(quiet).toBeGreaterThan(800);
      expect(quiet).toBeLessThan(5000);
      await expect.poll(() => appSocket.closed).toBe(true);
    }, 15_000);

    it('keeps a relay open past the timeout while bytes keep moving', async () => {
      const client = await connectTls(idle.port, allowed);
      let echoed = 0;
      client.on('data', (d: Buffer) => (echoed += d.length));
      let ended = false;
      void peerGone(client).then(() => (ended = true));
      for (let i = 0; i < 10; i++) {
        client.write('.');
        await new Promise((r) => setTimeout(r, 300));
        expect(ended).toBe(false);
      }
      expect(echoed).toBe(10);
      client.end();
      await closed(client);
    }, 15_000);
  });

  it('a drain (SIGTERM) refuses new connections, lets an open relay work, and cuts it at --drain-timeout', async () => {
    const draining = await startTestSidecar({
      protocol: 'tcp',
      upstream: app.upstream,
      'mtls-cert-file': files.certFile,
      'mtls-key-file': files.keyFile,
      'mtls-ca-file': files.caFile,
      allow: [ALLOWED_ID],
      'drain-timeout': '1s',
    });
    const client = await connectTls(draining.port, allowed);
    client.on('error', () => {});
    const hello = new Promise<void>((resolve) => client.once('data', () => resolve()));
    client.write('a');
    await hello;
    const started = performance.now();
    const stopped = draining.stop();
    const during = new Promise<Buffer>((resolve) => client.once('data', resolve));
    client.write('b');
    expect((await during).toString()).toBe('b');
    await expect(connectTls(draining.port, allowed)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await peerGone(client);
    await stopped;
    const took = performance.now() - started;
    expect(took).toBeGreaterThan(800);
    expect(took).toBeLessThan(5000);
  }, 15_000);

  it('in SPIRE mode, a revoked identity ends open relays and refuses new peers before the app', async () => {
    const api = await TestWorkloadApi.start(join(dir.path, 'agent.sock'));
    cleanups.push(() => api.close());
    api.setX509({
      svids: [{ spiffeId: SERVER_ID, svid: await issueSvid(ca, { id: SERVER_ID }), bundlePem: ca.certPem }],
    });
    const spire = await startSpireTestSidecar({
      protocol: 'tcp',
      upstream: app.upstream,
      'workload-api-socket': api.address,
      allow: [ALLOWED_ID],
    });
    cleanups.push(() => spire.close());
    const open = await connectTls(spire.port, allowed);
    open.on('error', () => {});
    const hello = new Promise<void>((resolve) => open.once('data', () => resolve()));
    open.write('a');
    await hello;
    api.unregister();
    await expect.poll(() => spire.identity.status().reason).toBe('identity_revoked');
    await peerGone(open);
    const acceptedBefore = app.accepted();
    const seen = await attempt(spire.port, allowed);
    expect(seen.stayedOpen).toBe(false);
    expect(seen.bytes).toBe(0);
    expect(app.accepted()).toBe(acceptedBefore);
    expect(spire.logs.some((l) => l.event === 'connection_refused' && l.reason === 'identity_revoked')).toBe(true);
  }, 20_000);
});
