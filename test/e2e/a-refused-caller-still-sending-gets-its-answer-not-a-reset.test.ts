// A caller refused while it is still sending (a denied upload, a malformed head with more behind it, a refused
// upgrade with frames sent at once) must be able to read its answer. Closing at once made our kernel answer
// the bytes still coming with a reset, and the caller saw EPIPE or ECONNRESET, not the 403 (undici: one upload
// in five; a Node TLS client writing 4 MB: ten in ten). The sidecar lingers instead (lingering-close.ts): its
// side ends after the answer, what still comes is read and dropped, never parsed, until the caller closes.
import { type AddressInfo, connect as tcpConnect, createServer, type Server } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { scrapeMetrics } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let s: Scenario;
let nodeEngine: TestSidecar;
/** An app that answers 413 as soon as a head arrives, then reads and drops the body (as nginx would). */
let refusingApp: Server;
let beforeRefusingApp: TestSidecar;
beforeAll(async () => {
  s = await startScenario();
  const serving = {
    'mtls-cert-file': s.files.certFile,
    'mtls-key-file': s.files.keyFile,
    'mtls-ca-file': s.files.caFile,
    allow: [ALLOWED_ID],
  };
  nodeEngine = await startTestSidecar({ ...serving, upstream: s.app.url, 'http-engine': 'node' });
  refusingApp = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () =>
      socket.end('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'),
    );
  });
  await new Promise<void>((resolve) => refusingApp.listen(0, '127.0.0.1', resolve));
  const { port } = refusingApp.address() as AddressInfo;
  beforeRefusingApp = await startTestSidecar({ ...serving, upstream: `http://127.0.0.1:${port}` });
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
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    cert: cert.chainPem,
    key: cert.keyPem,
    rejectUnauthorized: false,
  });
  let received = '';
  let error: string | undefined;
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
  await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()).once('close', () => resolve()));
  socket.write(head);
  socket.write(FLOOD);
  // The client ends its side when the sidecar ends its own (allowHalfOpen is off): the sidecar sees that FIN
  // after the whole flood and closes. A reset at any point is an 'error' here.
  await new Promise((resolve) => socket.once('close', resolve));
  return { received, error };
}

describe.each([
  ['raw', () => s.sidecar.port],
  ['node', () => nodeEngine.port],
])('--http-engine %s', (_engine, port) => {
  it('a denied caller that sends WebSocket frames right behind its upgrade reads its 403, without a reset', async () => {
    const upgrades = s.app.upgrades.length;
    const { received, error } = await sendAndRead(port(), s.denied, UPGRADE);
    expect(error).toBeUndefined();
    expect(received).toMatch(/^HTTP\/1\.1 403 /);
    expect(s.app.upgrades.length).toBe(upgrades);
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
    // TLS over a TCP socket that allows half-open: the client never answers the sidecar's FIN, so only the
    // sidecar's own bound can end this connection.
    const tcp = tcpConnect({ host: '127.0.0.1', port: sidecar.port, allowHalfOpen: true });
    tcp.on('error', () => {});
    const socket: TLSSocket = tlsConnect({
      socket: tcp,
      cert: s.denied.chainPem,
      key: s.denied.keyPem,
      rejectUnauthorized: false,
    });
    socket.on('error', () => {});
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    socket.write('POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\nsome of it');
    await expect.poll(() => received).toMatch(/^HTTP\/1\.1 403 /);
    await expect.poll(active).toBe(0);
    socket.destroy();
    expect((await requestVia(sidecar.port, s.allowed, { path: '/after-linger' })).status).toBe(413);
  });
});
