// An outbound route's log lines name the request's path as the audit line does: no query, at most 256 characters,
// and for an absolute-form target (`GET http://user:pass@host/x`, which the app may send to a proxy) its path
// only, never its userinfo or host (a review: the whole target was logged, credentials and all, at any length,
// on every failing request).
import { connect } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createDevCa, servingOptions, tempDir } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { closedPort } from '../helpers/tcp-echo-app.js';

let dir: { path: string; remove: () => Promise<void> };
let sidecar: TestSidecar;
beforeAll(async () => {
  dir = await tempDir();
  const ca = await createDevCa({ trustDomain: 'example.org' });
  // The remote is down: every request fails, and each failure is logged.
  sidecar = await startTestSidecar({
    ...(await servingOptions(dir.path, ca, 'spiffe://example.org/app')),
    outbound: [`127.0.0.1:0=https://127.0.0.1:${await closedPort()},id=spiffe://example.org/remote`],
  });
});
afterAll(async () => {
  await sidecar?.close();
  await dir?.remove();
});

/** One raw HTTP/1.1 request from the app to the route, read to its end. */
function send(target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: sidecar.outboundAddresses()[0].port });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.once('end', () => resolve(text));
    socket.once('error', reject);
    socket.write(`GET ${target} HTTP/1.1\r\nhost: remote\r\nconnection: close\r\n\r\n`);
  });
}

const rejected = () => sidecar.logs.filter((l) => l.event === 'outbound_rejected');

it("an absolute-form target's userinfo, host and query never reach the line", async () => {
  expect(await send('http://alice:hunter2@orders.internal/v1/reset?token=tok_SECRET123')).toMatch(/^HTTP\/1\.1 502 /);
  await expect.poll(() => rejected().length).toBe(1);
  expect(rejected()[0].path).toBe('/v1/reset');
  expect(JSON.stringify(rejected()[0])).not.toMatch(/hunter2|alice|orders\.internal|tok_SECRET/);
});

it('a long path is cut as the audit line cuts it', async () => {
  expect(await send(`/${'p'.repeat(15_000)}?q=1`)).toMatch(/^HTTP\/1\.1 502 /);
  await expect.poll(() => rejected().length).toBe(2);
  expect(rejected()[1].path).toBe(`/${'p'.repeat(255)}...`);
});
