// The webhook is reachable by anything in the cluster network, not only the API server: it answers
// only POST with JSON on its two paths (and GET on its health paths), bounds the body, the headers, the
// handshake and the whole request in time, refuses what is not an AdmissionReview v1, and serves many
// reviews on one kept-alive connection as the API server sends them.
import { connect as connectTcp } from 'node:net';
import { join } from 'node:path';
import { request } from 'node:https';
import { connect as connectTls } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  admissionReview,
  callWebhook,
  createWebhookCa,
  deploymentPod,
  issueServingCertificate,
  type RunningWebhook,
  startWebhook,
  stopWebhook,
  WEBHOOK_DNS_NAME,
  writeServingSecret,
} from '../helpers/admission.js';
import { tempDir } from '../helpers/pki.js';

let caPem: string;
let webhook: RunningWebhook;
let removeDir: () => Promise<void>;

beforeAll(async () => {
  const dir = await tempDir();
  removeDir = dir.remove;
  const ca = await createWebhookCa();
  caPem = ca.certPem;
  await writeServingSecret(join(dir.path, 'tls'), await issueServingCertificate(ca));
  webhook = await startWebhook(join(dir.path, 'tls'), '--request-timeout', '1s');
});
afterAll(async () => {
  await stopWebhook(webhook);
  await removeDir?.();
});

const review = () =>
  JSON.stringify(
    admissionReview(
      deploymentPod({
        'spiffe-sidecar.io/inject': 'true',
        'spiffe-sidecar.io/app-port': '8080',
        'spiffe-sidecar.io/allow': 'spiffe://example.org/ns/shop/sa/frontend',
      }),
    ),
  );

/** Resolves with the milliseconds until the server closed the socket. */
function closedAfter(socket: NodeJS.EventEmitter): Promise<number> {
  const start = Date.now();
  return new Promise((resolve) => socket.once('close', () => resolve(Date.now() - start)));
}

describe('the inject webhook serves only bounded POST requests on its paths', () => {
  it('answers a review with JSON, and GET on its health paths', async () => {
    const answer = await callWebhook(webhook.port, caPem, { body: review() });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json');
    expect(JSON.parse(answer.text).response.allowed).toBe(true);
    for (const path of ['/healthz', '/readyz']) {
      expect((await callWebhook(webhook.port, caPem, { method: 'GET', path })).status).toBe(200);
    }
  });

  it('refuses other methods, paths and media types', async () => {
    const get = await callWebhook(webhook.port, caPem, { method: 'GET', path: '/inject' });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect((await callWebhook(webhook.port, caPem, { method: 'POST', path: '/healthz' })).status).toBe(405);
    expect((await callWebhook(webhook.port, caPem, { path: '/mutate', body: review() })).status).toBe(404);
    expect((await callWebhook(webhook.port, caPem, { path: '/inject/../inject', body: review() })).status).toBe(404);
    const text = await callWebhook(webhook.port, caPem, { body: review(), headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
  });

  it('refuses what is not an AdmissionReview v1 with 400', async () => {
    const body = JSON.parse(review());
    const cases = [
      '{"apiVersion":',
      JSON.stringify({ ...body, apiVersion: 'admission.k8s.io/v1beta1' }),
      JSON.stringify({ ...body, request: { ...body.request, uid: undefined } }),
      JSON.stringify({ ...body, request: { ...body.request, object: 'a pod' } }),
      JSON.stringify([body]),
    ];
    for (const text of cases) {
      const answer = await callWebhook(webhook.port, caPem, { body: text });
      expect(answer.status, text.slice(0, 60)).toBe(400);
    }
  });

  it('refuses a body over 2 MiB, announced or streamed, with 413', async () => {
    const announced = await callWebhook(webhook.port, caPem, {
      body: Buffer.alloc(3 * 1024 * 1024, 0x20),
    });
    expect(announced.status).toBe(413);

    // Chunked, no length announced: the answer comes once the limit is crossed, and the connection closes.
    const streamed = await new Promise<{ status: number; closedMs: Promise<number> }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: webhook.port,
          servername: WEBHOOK_DNS_NAME,
          ca: caPem,
          method: 'POST',
          path: '/inject',
          headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
          agent: false,
        },
        (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, closedMs: closedAfter(res.socket) });
        },
      );
      // Once the answer is in, a write that finds the connection closed is expected (the promise has settled);
      // before it, a broken connection is the failure this test exists for, not a reason to wait forever.
      req.on('error', (err) => reject(new Error(`the connection broke before any answer: ${err.message}`)));
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let sent = 0;
      const pump = () => {
        while (sent < 8 * 1024 * 1024 && !req.destroyed) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
      };
      pump();
    });
    expect(streamed.status).toBe(413);
    expect(await streamed.closedMs).toBeLessThan(8000);
  });

  it('holds at most 8 MiB of large bodies at once: the next large one is refused with 503, small reviews go on', async () => {
    // Each announces a 2 MiB body. Node sends 100 Continue as it hands the request to the handler, and the handler
    // takes the body's share at once: by the 100, the share is taken (or refused, the 503 right behind it). None of
    // them sends its body, as a hostile client would not.
    const announce = async () => {
      const socket = connectTls({ host: '127.0.0.1', port: webhook.port, servername: WEBHOOK_DNS_NAME, ca: caPem });
      socket.on('error', () => {});
      await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
      let received = '';
      socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
      socket.write(
        `POST /inject HTTP/1.1\r\nHost: ${WEBHOOK_DNS_NAME}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${2 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n`,
      );
      await expect.poll(() => received).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
      return { socket, received: () => received };
    };
    const holding = [];
    for (let i = 0; i < 4; i++) holding.push(await announce());
    const fifth = await announce();
    await expect.poll(fifth.received).toMatch(/\r\n\r\nHTTP\/1\.1 503 [^]*"error":"too_many_large_bodies"/);
    expect(fifth.received()).toMatch(/\r\nretry-after: 1\r\n/i);
    // A real review is small: served while the large ones hold the budget.
    expect((await callWebhook(webhook.port, caPem, { body: review() })).status).toBe(200);
    // The first four were never refused: each still waits for its body.
    for (const h of holding) expect(h.received()).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    // Their connections gone, their shares come back: a large review (padded to 1 MiB) is served again.
    for (const h of [...holding, fifth]) h.socket.destroy();
    const large = review().padEnd(1024 * 1024, ' ');
    await expect.poll(async () => (await callWebhook(webhook.port, caPem, { body: large })).status).toBe(200);
  });

  // With --request-timeout 1s both are cut within a second or two; the bound leaves room for a loaded
  // machine and still fails Node's default, which checks timeouts only every 30 s.
  it('cuts a client that sends its headers too slowly, and one that never starts TLS', async () => {
    const slow = connectTls({ host: '127.0.0.1', port: webhook.port, servername: WEBHOOK_DNS_NAME, ca: caPem });
    await new Promise<void>((resolve, reject) => slow.once('secureConnect', resolve).once('error', reject));
    const slowClosed = closedAfter(slow);
    slow.write('POST /inject HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => slow.write('x-a: b\r\n'), 200);
    try {
      expect(await slowClosed).toBeLessThan(8000);
    } finally {
      clearInterval(trickle);
    }

    const silent = connectTcp({ host: '127.0.0.1', port: webhook.port });
    silent.on('error', () => {});
    expect(await closedAfter(silent)).toBeLessThan(8000);
  });

  it('serves several reviews on one kept-alive connection, each with its own uid', async () => {
    const socket = connectTls({ host: '127.0.0.1', port: webhook.port, servername: WEBHOOK_DNS_NAME, ca: caPem });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    const bodies = [review(), review(), review()];
    let received = '';
    socket.on('data', (d: Buffer) => {
      received += d.toString();
    });
    for (const body of bodies) {
      socket.write(
        `POST /inject HTTP/1.1\r\nHost: ${WEBHOOK_DNS_NAME}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    const deadline = Date.now() + 5000;
    while ((received.match(/HTTP\/1\.1 200/g) ?? []).length < 3 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    socket.destroy();
    const uids = bodies.map((b) => JSON.parse(b).request.uid as string);
    for (const uid of uids) expect(received).toContain(`"uid":"${uid}"`);
  });
});
