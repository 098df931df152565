// Resource limits: header timeout (slowloris), connection limit under a burst, header size, upstream timeout.
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestVia } from '../helpers/client.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let s: Scenario;
let limited: TestSidecar;
beforeAll(async () => {
  s = await startScenario();
  limited = await startTestSidecar({
    upstream: s.app.url,
    'mtls-cert-file': s.files.certFile,
    'mtls-key-file': s.files.keyFile,
    'mtls-ca-file': s.files.caFile,
    allow: [ALLOWED_ID],
    'header-timeout': '1s',
    'max-connections': '4',
    'max-header-bytes': '2048',
    'upstream-timeout': '500ms',
  });
});
afterAll(async () => {
  await limited.close();
  await s.close();
});

function open() {
  const socket = connect({
    host: '127.0.0.1',
    port: limited.port,
    cert: s.allowed.chainPem,
    key: s.allowed.keyPem,
    rejectUnauthorized: false,
  });
  return new Promise<typeof socket>((resolve, reject) =>
    socket
      .once('secureConnect', () => resolve(socket))
      .once('error', reject)
      .once('close', () => reject(new Error('closed'))),
  );
}

describe('limits cut slowloris, refuse excess connections and time out the app', () => {
  it('a request whose headers dribble in is cut at the header timeout; the app sees nothing', async () => {
    const seen = s.app.seen.length;
    const socket = await open();
    let received = '';
    let closed = false;
    socket.on('data', (d: Buffer) => {
      received += d.toString();
    });
    socket.on('close', () => {
      closed = true;
    });
    socket.on('error', () => {});
    const started = Date.now();
    socket.write('GET /dribble HTTP/1.1\r\nHost: x\r\n');
    const dribble = setInterval(() => {
      if (!closed) socket.write('X-Slow: y\r\n');
    }, 200);
    await expect.poll(() => closed, { timeout: 5000 }).toBe(true);
    clearInterval(dribble);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(3500);
    expect(received === '' || received.startsWith('HTTP/1.1 408')).toBe(true);
    expect(s.app.seen.length).toBe(seen);
  });

  it('the connection limit holds under a burst, and frees up afterwards', async () => {
    const attempts = await Promise.allSettled(Array.from({ length: 16 }, () => open()));
    const open_ = attempts
      .filter((a) => a.status === 'fulfilled')
      .map((a) => (a as PromiseFulfilledResult<Awaited<ReturnType<typeof open>>>).value);
    expect(open_.length).toBeGreaterThanOrEqual(1);
    expect(open_.length).toBeLessThanOrEqual(4);
    expect(limited.logs.filter((l) => l.event === 'connection_dropped').length).toBeGreaterThanOrEqual(12);
    const scrape = await (await fetch(`http://127.0.0.1:${limited.adminAddress().port}/metrics`)).text();
    expect(Number(/^spiffe_sidecar_connections_dropped_total (\d+)$/m.exec(scrape)?.[1])).toBeGreaterThanOrEqual(12);
    for (const socket of open_) socket.destroy();
    await expect
      .poll(async () => (await requestVia(limited.port, s.allowed).catch(() => ({ status: 0 }))).status)
      .toBe(200);
  });

  it('headers over --max-header-bytes get 431', async () => {
    const res = await requestVia(limited.port, s.allowed, { headers: { 'x-big': 'a'.repeat(4096) } });
    expect(res.status).toBe(431);
  });

  it('an app slower than --upstream-timeout gets the caller a 504', async () => {
    const res = await requestVia(limited.port, s.allowed, { path: '/slow?ms=2000' });
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body)).toEqual({ error: 'gateway_timeout', reason: 'upstream_timeout' });
  });
});
