// A request in progress cannot hold its connection (and an app connection) for ever: a stalled upload
// (HTTP/1.1 and HTTP/2), a caller that never reads its response, and a silent WebSocket tunnel are each cut
// by their documented timeout, logged, and the app's side is released.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { openRaw } from '../helpers/client.js';
import { createDevCa, issueSvid, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const CLIENT_ID = 'spiffe://example.org/client';
const BIG = 64 * 1024 * 1024;

let dir: { path: string; remove: () => Promise<void> };
let app: Server;
let client: IssuedCertificate;
let sidecar: TestSidecar;
/** Completed uploads the app saw, by path. */
const completed: string[] = [];
/** Resolves when the app's response to /big is cut before its end. */
let bigCut: Promise<void>;
let onBigCut: () => void;

beforeAll(async () => {
  dir = await tempDir();
  bigCut = new Promise((resolve) => (onBigCut = resolve));
  app = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/big') {
      // 64 MB, written as fast as the sidecar takes it: far more than any buffer between us and the caller.
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let sent = 0;
      res.writeHead(200, { 'content-length': String(BIG) });
      res.once('close', () => {
        if (!res.writableFinished) onBigCut();
      });
      const pump = () => {
        while (sent < BIG) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    req.resume();
    req.on('end', () => {
      completed.push(req.url ?? '');
      res.end('done');
    });
  });
  app.on('upgrade', (_req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const serving = await writeServingFiles(
    dir.path,
    await issueSvid(ca, { id: 'spiffe://example.org/server' }),
    ca.certPem,
  );
  client = await issueSvid(ca, { id: CLIENT_ID });
  sidecar = await startTestSidecar({
    upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
    allow: [CLIENT_ID],
    'request-body-timeout': '1s',
    'response-write-timeout': '1s',
    'tunnel-idle-timeout': '1s',
  });
});
afterAll(async () => {
  await sidecar.close();
  app.closeAllConnections();
  await new Promise((resolve) => app.close(resolve));
  await dir.remove();
});

/** Resolves with the first log line of this event and reason (lines logged from now on). */
function logged(reason: string): Promise<Record<string, unknown>> {
  const from = sidecar.logs.length;
  return new Promise((resolve) => {
    const poll = setInterval(() => {
      const line = sidecar.logs.slice(from).find((l) => l.event === 'request_timeout' && l.reason === reason);
      if (line) {
        clearInterval(poll);
        resolve(line);
      }
    }, 20);
  });
}

describe('inactivity timeouts', () => {
  it('an HTTP/1.1 upload that stalls gets 408 and its connection closes; the app never sees it complete', async () => {
    const line = logged('request_body_timeout');
    const raw = await openRaw(sidecar.port, client);
    const closed = new Promise((resolve) => raw.socket.once('close', resolve));
    raw.socket.write('POST /stalled-h1 HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789');
    await closed;
    expect(raw.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(raw.received()).toContain('"reason":"request_body_timeout"');
    expect(await line).toMatchObject({ remote: '127.0.0.1' });
    expect(completed).not.toContain('/stalled-h1');
  });

  it('an HTTP/2 upload that stalls gets 408 on its stream', async () => {
    const session = http2.connect(`https://127.0.0.1:${sidecar.port}`, {
      cert: client.chainPem,
      key: client.keyPem,
      rejectUnauthorized: false,
    });
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/stalled-h2' }, { endStream: false });
      stream.write('abc');
      const [headers, body] = await new Promise<[http2.IncomingHttpHeaders, string]>((resolve, reject) => {
        let text = '';
        let head: http2.IncomingHttpHeaders = {};
        stream.on('response', (h) => (head = h));
        stream.on('data', (d: Buffer) => (text += d.toString()));
        stream.on('end', () => resolve([head, text]));
        stream.on('error', reject);
      });
      expect(headers[':status']).toBe(408);
      expect(JSON.parse(body)).toEqual({ error: 'request_timeout', reason: 'request_body_timeout' });
      expect(completed).not.toContain('/stalled-h2');
    } finally {
      session.destroy();
    }
  });

  it('an HTTP/2 upload trickled one byte at a time is cut once it averages under --request-body-min-rate; a gRPC stream is not', async () => {
    const session = http2.connect(`https://127.0.0.1:${sidecar.port}`, {
      cert: client.chainPem,
      key: client.keyPem,
      rejectUnauthorized: false,
    });
    /** Writes one byte every 100 ms until the answer comes (or, with `endAfterMs`, ends the body then). */
    const trickle = (path: string, headers: http2.OutgoingHttpHeaders, endAfterMs?: number) => {
      const stream = session.request({ ':method': 'POST', ':path': path, ...headers }, { endStream: false });
      const started = Date.now();
      const tick = setInterval(() => {
        if (endAfterMs !== undefined && Date.now() - started > endAfterMs) {
          clearInterval(tick);
          stream.end();
        } else if (!stream.closed && !stream.destroyed) stream.write('x');
      }, 100);
      return new Promise<[number, string]>((resolve, reject) => {
        let status = 0;
        let text = '';
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (d: Buffer) => (text += d.toString()));
        stream.on('end', () => resolve([status, text]));
        stream.on('error', reject);
      }).finally(() => clearInterval(tick));
    };
    try {
      // A gRPC client stream silent for longer than --request-body-timeout (1 s here), then ended: a watch
      // or a subscription may rightly send nothing for minutes.
      const silent = session.request(
        { ':method': 'POST', ':path': '/grpc-silent', 'content-type': 'application/grpc' },
        { endStream: false },
      );
      silent.write('x');
      const silentAnswer = new Promise<number>((resolve, reject) => {
        silent.on('response', (h) => resolve(Number(h[':status'])));
        silent.on('error', reject);
      });
      silent.resume();
      const [trickled, grpc] = await Promise.all([
        trickle('/trickled', {}),
        // Past the 5 s grace at the same trickle, then the client ends its stream: served in full.
        trickle('/grpc-trickled', { 'content-type': 'application/grpc' }, 6_000),
      ]);
      // Six seconds have passed with nothing on the silent stream: it was not cut, and ends normally.
      silent.end();
      expect(await silentAnswer).toBe(200);
      expect(completed).toContain('/grpc-silent');
      expect(trickled[0]).toBe(408);
      expect(JSON.parse(trickled[1])).toEqual({ error: 'request_timeout', reason: 'request_body_too_slow' });
      expect(completed).not.toContain('/trickled');
      expect(grpc[0]).toBe(200);
      expect(completed).toContain('/grpc-trickled');
    } finally {
      session.destroy();
    }
  });

  it('a caller that never reads a large response is cut, and so is the app connection', async () => {
    const line = logged('response_write_timeout');
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: sidecar.port,
      cert: client.chainPem,
      key: client.keyPem,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    socket.write('GET /big HTTP/1.1\r\nhost: x\r\n\r\n');
    // Never read: the sidecar's writes stall once the buffers between us fill.
    socket.pause();
    await bigCut;
    expect(await line).toMatchObject({ reason: 'response_write_timeout' });
    socket.destroy();
  });

  it('a WebSocket tunnel with no traffic either way is closed', async () => {
    const line = logged('tunnel_idle_timeout');
    const raw = await openRaw(sidecar.port, client);
    const closed = new Promise((resolve) => raw.socket.once('close', resolve));
    raw.socket.write('GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
    await closed;
    expect(raw.received()).toMatch(/^HTTP\/1\.1 101 /);
    expect(await line).toMatchObject({ remote: '127.0.0.1' });
  });
});
