// HTTP/2 rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, over and over, in a few packets. The sidecar
// must not open an app connection for a stream that is already reset, and once the connection has opened
// 100 streams of which more than half were reset before an answer, it gets GOAWAY(ENHANCE_YOUR_CALM). Other callers are served throughout. Frames are written by
// hand (RFC 9113 §4, §6; HPACK static table, RFC 7541 Appendix A), as an attacker would.
import { createServer, type Server } from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIN_STREAMS_JUDGED } from '../../src/proxy/inbound.js';
import { type Scenario, startScenario } from '../helpers/scenario.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const GOAWAY = 0x7;
const ENHANCE_YOUR_CALM = 0xb;
const CANCEL = 0x8;

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/** GET / on https, authority "x": :method GET (2), :scheme https (7), :path / (4), :authority literal. */
const REQUEST_BLOCK = Buffer.from([0x82, 0x87, 0x84, 0x01, 0x01, 0x78]);

let s: Scenario;
let app: Server;
let appConnections = 0;

beforeAll(async () => {
  app = createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  app.on('connection', () => appConnections++);
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  s = await startScenario({ upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}` });
});
afterAll(async () => {
  await s.close();
  app.closeAllConnections();
  await new Promise((resolve) => app.close(resolve));
});

describe('HTTP/2 rapid reset', () => {
  it('reset streams open no app connection, and the flood ends in GOAWAY(ENHANCE_YOUR_CALM)', async () => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: s.sidecar.port,
      cert: s.allowed.chainPem,
      key: s.allowed.keyPem,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
    });
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    expect(socket.alpnProtocol).toBe('h2');
    let received = Buffer.alloc(0);
    let goawayCode: number | undefined;
    const goaway = new Promise<void>((resolve) => {
      socket.on('data', (d: Buffer) => {
        received = Buffer.concat([received, d]);
        while (received.length >= 9) {
          const length = received.readUIntBE(0, 3);
          if (received.length < 9 + length) break;
          if (received[3] === GOAWAY && goawayCode === undefined) {
            goawayCode = received.readUInt32BE(9 + 4);
            resolve();
          }
          received = received.subarray(9 + length);
        }
      });
      socket.once('close', () => resolve());
    });
    socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0))]));
    const code = Buffer.alloc(4);
    code.writeUInt32BE(CANCEL);
    // Each pair in one write, so one TLS record: the sidecar reads the RST_STREAM with its HEADERS. Exactly as
    // many pairs as the rule judges from, so that the last one is what crosses it: the sidecar has read every byte
    // sent when it closes. (A longer flood, still unread when the connection closes, makes the kernel answer it with
    // a reset, which a client may take before the GOAWAY: seen once under a CPU hog.)
    for (let id = 1; id < 2 * MIN_STREAMS_JUDGED; id += 2)
      socket.write(Buffer.concat([frame(HEADERS, 0x5, id, REQUEST_BLOCK), frame(RST_STREAM, 0, id, code)]));
    await goaway;
    socket.destroy();
    expect(goawayCode).toBe(ENHANCE_YOUR_CALM);
    expect(appConnections).toBe(0);
    expect(s.sidecar.logs.some((l) => l.event === 'connection_closed' && l.reason === 'too_many_resets')).toBe(true);

    // A well-behaved caller is served, and reaches the app.
    const session = http2.connect(`https://127.0.0.1:${s.sidecar.port}`, {
      cert: s.allowed.chainPem,
      key: s.allowed.keyPem,
      rejectUnauthorized: false,
    });
    try {
      const stream = session.request({ ':path': '/' });
      stream.resume();
      const status = await new Promise<number>((resolve, reject) => {
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', reject);
      });
      expect(status).toBe(200);
      expect(appConnections).toBe(1);
    } finally {
      session.destroy();
    }
  });
});
