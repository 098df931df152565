// A request body must never reach the app as a second request: that request would skip header
// stripping and could carry any x-spiffe-id. Raw bytes over real TLS, as an attacker would send them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaw, requestVia } from '../helpers/client.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s.close());

const SMUGGLED = 'GET /admin/delete-all HTTP/1.1\r\nHost: x\r\nx-spiffe-id: spiffe://example.org/admin\r\n\r\n';

/** Sends raw bytes on a new mTLS connection as the allowed caller; resolves with what came back. */
async function sendRaw(bytes: string, waitFor: RegExp): Promise<string> {
  const { socket, received } = await openRaw(s.sidecar.port, s.allowed);
  socket.write(bytes);
  await expect.poll(received, { timeout: 5000 }).toMatch(waitFor);
  socket.destroy();
  return received();
}

/** More requests through the same upstream pool: a smuggled request queued on it would surface now. */
async function flushPool() {
  for (let i = 0; i < 3; i++)
    expect((await requestVia(s.sidecar.port, s.allowed, { path: `/flush${i}` })).status).toBe(200);
}

function expectNoSmuggledRequest() {
  expect(s.app.seen.map((r) => r.url)).not.toContain('/admin/delete-all');
  for (const r of s.app.seen) expect(r.headers['x-spiffe-id']).toBe(ALLOWED_ID);
}

describe('request smuggling cannot carry a forged identity to the app', () => {
  it('a chunked GET body stays a body', async () => {
    const chunk = Buffer.byteLength(SMUGGLED).toString(16);
    const answer = await sendRaw(
      `GET /innocent HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}\r\n${SMUGGLED}\r\n0\r\n\r\n`,
      /HTTP\/1\.1 200/,
    );
    expect(JSON.parse(answer.slice(answer.indexOf('{'))).bodyLength).toBe(Buffer.byteLength(SMUGGLED));
    await flushPool();
    expectNoSmuggledRequest();
  });

  it('Content-Length listed in Connection is not dropped', async () => {
    const answer = await sendRaw(
      `DELETE /x HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(SMUGGLED)}\r\nConnection: keep-alive, Content-Length\r\n\r\n${SMUGGLED}`,
      /HTTP\/1\.1 200/,
    );
    expect(JSON.parse(answer.slice(answer.indexOf('{'))).bodyLength).toBe(Buffer.byteLength(SMUGGLED));
    await flushPool();
    expectNoSmuggledRequest();
  });

  it('an upgrade to anything but websocket is refused (h2c would tunnel past header stripping)', async () => {
    const before = s.app.upgrades.length;
    const answer = await sendRaw(
      'GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
      /HTTP\/1\.1 400/,
    );
    expect(answer).toContain('unsupported_upgrade');
    const post = await sendRaw(
      'POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
      /HTTP\/1\.1 400/,
    );
    expect(post).toContain('unsupported_upgrade');
    expect(s.app.upgrades.length).toBe(before);
    expectNoSmuggledRequest();
  });
});
