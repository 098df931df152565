// A caller refused while it is still sending (a denied upload, a malformed or timed-out head with more behind
// it, a refused or declined upgrade with frames sent at once) must be able to read its answer. Closing at once
// made our kernel answer the bytes still coming with a reset, and the caller saw EPIPE or ECONNRESET, not the
// 403 (undici: one upload in five; a Node TLS client writing 4 MB: ten in ten). The sidecar lingers instead
// (lingering-close.ts): its side ends after the answer, what still comes is read and dropped, never parsed,
// until the caller closes; a drain closes it at once. The 30 s bound (LINGER_MAX_MS) has a file of its own
// (a-refused-caller-that-keeps-trickling-is-closed-at-the-linger-bound.test.ts).
import { type AddressInfo, createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { lastAudit, scrapeMetrics } from '../helpers/authz.js';
import { openCaller, requestVia } from '../helpers/client.js';
import { mtlsFileOptions } from '../helpers/pki.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let s: Scenario;
let nodeEngine: TestSidecar;
/** An app that answers 413 as soon as a head arrives, then reads and drops the body (as nginx would). */
let refusingApp: Server;
let beforeRefusingApp: TestSidecar;
/** The scenario's serving SVID and the allowed caller, for the sidecars of this file. */
const serving = () => ({ ...mtlsFileOptions(s.files), allow: [ALLOWED_ID] });
beforeAll(async () => {
  s = await startScenario();
  nodeEngine = await startTestSidecar({ ...serving(), upstream: s.app.url, 'http-engine': 'node' });
  refusingApp = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () =>
      socket.end('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'),
    );
  });
  await new Promise<void>((resolve) => refusingApp.listen(0, '127.0.0.1', resolve));
  const { port } = refusingApp.address() as AddressInfo;
  beforeRefusingApp = await startTestSidecar({ ...serving(), upstream: `http://127.0.0.1:${port}` });
});
afterAll(async () => {
  await beforeRefusingApp?.close();
  refusingApp?.close();
  await nodeEngine?.close();
  await s?.close();
});

/**
 * More than the kernel's buffers on both ends can hold, so that the sidecar must read most of it. What comes
 * after the refusal looks like requests, and none may reach the app.
 */
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n';
const FLOOD = Buffer.from(SMUGGLED.repeat(Math.ceil((48 * 1024 * 1024) / SMUGGLED.length)), 'latin1');

const UPGRADE =
  'GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

interface Outcome {
  received: string;
  /** The error the client's socket got (EPIPE, ECONNRESET), if any. */
  error: string | undefined;
}

/** Sends `head` and then the flood in one write, reads everything, and ends once the sidecar has ended. */
async function sendAndRead(port: number, cert: IssuedCertificate, head: string): Promise<Outcome> {
  const c = await openCaller(port, cert);
  c.socket.write(head);
  c.socket.write(FLOOD);
  // The client ends its side when the sidecar ends its own (allowHalfOpen is off): the sidecar sees that FIN
  // after the whole flood and closes. A reset at any point is an 'error' here.
  await c.closed;
  return { received: c.received(), error: c.error() };
}

describe.each([
  ['raw', () => s.sidecar],
  ['node', () => nodeEngine],
])('--http-engine %s', (_engine, sidecar) => {
  it('a denied caller that sends WebSocket frames right behind its upgrade reads its 403, without a reset', async () => {
    const upgrades = s.app.upgrades.length;
    const from = sidecar().logs.length;
    const { received, error } = await sendAndRead(sidecar().port, s.denied, UPGRADE);
    expect(error).toBeUndefined();
    expect(received).toMatch(/^HTTP\/1\.1 403 /);
    expect(s.app.upgrades.length).toBe(upgrades);
    // The access line ends with the refusal: the frames dropped after it are not the request's bytes.
    const line = await lastAudit(sidecar().logs, 'GET', '/ws', from);
    expect(line).toMatchObject({ status: 403, decision: 'deny' });
    expect(line.bytes_in).toBeLessThan(FLOOD.length / 2);
  });
});

describe('--http-engine raw', () => {
  it('a denied caller uploading a large body reads its 403, and the connection closes without a reset', async () => {
    const seen = s.app.seen.length;
    const { received, error } = await sendAndRead(
      s.sidecar.port,
      s.denied,
      `POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: ${FLOOD.length * 2}\r\n\r\n`,
    );
    expect(error).toBeUndefined();
    expect(received).toMatch(/^HTTP\/1\.1 403 /);
    expect(received).toContain('"reason":"no_matching_rule"');
    expect(s.app.seen.length).toBe(seen);
  });

  it('a malformed head with more bytes behind it is answered 400, and nothing behind it is parsed', async () => {
    const seen = s.app.seen.length;
    const { received, error } = await sendAndRead(s.sidecar.port, s.allowed, 'GET / HTTP/1.1\r\nhost x\r\n\r\n');
    expect(error).toBeUndefined();
    expect(received).toMatch(/^HTTP\/1\.1 400 /);
    expect(s.app.seen.length).toBe(seen);
  });

  it('an allowed caller whose upload the app refuses early reads the app answer, without a reset', async () => {
    const { received, error } = await sendAndRead(
      beforeRefusingApp.port,
      s.allowed,
      `POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: ${FLOOD.length * 2}\r\n\r\n`,
    );
    expect(error).toBeUndefined();
    expect(received).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('a refused caller that goes quiet is not held: the sidecar closes the lingering connection itself', async () => {
    const sidecar = beforeRefusingApp;
    const active = async () =>
      Number(/^spiffe_sidecar_active_connections (\d+)$/m.exec(await scrapeMetrics(sidecar.adminAddress().port))?.[1]);
    // The connections of the test before have closed (each client ended its side after its flood).
    await expect.poll(active).toBe(0);
    // Half-open: the client never answers the sidecar's FIN, so only the sidecar's own bound can end this connection.
    const { socket, received } = await openCaller(sidecar.port, s.denied, true);
    socket.write('POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\nsome of it');
    await expect.poll(received).toMatch(/^HTTP\/1\.1 403 /);
    await expect.poll(active).toBe(0);
    socket.destroy();
    expect((await requestVia(sidecar.port, s.allowed, { path: '/after-linger' })).status).toBe(413);
  });
  it('an allowed caller refused by the sidecar mid-upload reads its answer, and nothing behind it reaches the app', async () => {
    // Refused before its body (417): everything after the head is body, and then requests, none of them parsed.
    const { received, error } = await sendAndRead(
      s.sidecar.port,
      s.allowed,
      `POST /upload HTTP/1.1\r\nhost: x\r\nexpect: something-else\r\ncontent-length: 10\r\n\r\n`,
    );
    expect(error).toBeUndefined();
    expect(received).toMatch(/^HTTP\/1\.1 417 /);
    expect(s.app.seen.map((r) => r.url)).not.toContain('/smuggled');
  });

  it('an upgrade the app declines: the caller sending frames behind it reads the app answer, without a reset', async () => {
    const { received, error } = await sendAndRead(beforeRefusingApp.port, s.allowed, UPGRADE);
    expect(error).toBeUndefined();
    expect(received).toMatch(/^HTTP\/1\.1 413 /);
  });

  it('a head cut by the header timeout: the rest of it and the requests after it are dropped, without a reset', async () => {
    const sidecar = await startTestSidecar({
      ...serving(),
      upstream: s.app.url,
      'header-timeout': '1s',
    });
    try {
      const slow = await openCaller(sidecar.port, s.allowed, true);
      slow.socket.write('GET /slowloris HTTP/1.1\r\nhost: x\r\n');
      await expect.poll(slow.received).toMatch(/^HTTP\/1\.1 408 /);
      slow.socket.write('x-more: 1\r\n\r\n');
      slow.socket.end(FLOOD);
      await slow.closed;
      expect(slow.error()).toBeUndefined();
      expect(s.app.seen.map((r) => r.url)).not.toContain('/slowloris');
      expect(s.app.seen.map((r) => r.url)).not.toContain('/smuggled');
    } finally {
      await sidecar.close();
    }
  });
});

describe.each(['raw', 'node'] as const)('--http-engine %s: a drain', (engine) => {
  it('closes a refused upgrade that is still lingering, rather than waiting out its linger', async () => {
    const sidecar = await startTestSidecar({
      ...serving(),
      upstream: s.app.url,
      'http-engine': engine,
      'drain-timeout': '60s',
    });
    const refused = await openCaller(sidecar.port, s.denied, true);
    refused.socket.write(UPGRADE);
    await expect.poll(refused.received).toMatch(/^HTTP\/1\.1 403 /);
    // A byte now and then: never quiet for the linger's idle bound, so only the drain can close it before the
    // linger's 30 s (the test's own timeout).
    const trickle = setInterval(() => refused.socket.write('x'), 200);
    try {
      await sidecar.stop();
      await refused.closed;
    } finally {
      clearInterval(trickle);
      refused.socket.destroy();
      await sidecar.close();
    }
  });
});
