// The raw HTTP/1.1 path parses a head once its end has come, never from its start on every byte (a caller
// trickling a head must not cost the sidecar quadratic CPU). A head split anywhere, its CRLF CRLF included, is
// served; one that ends in bare LFs is refused as soon as they arrive, not at the header timeout.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRaw } from '../helpers/client.js';
import { type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  // A long header timeout: an answer can only come from the head's end, never from the timer.
  s = await startScenario({ 'header-timeout': '60s' });
});
afterAll(() => s.close());

/** Writes `text` one byte per TLS record, waiting for each to be flushed. */
async function trickle(socket: Awaited<ReturnType<typeof openRaw>>['socket'], text: string) {
  for (const byte of text) await new Promise<void>((resolve) => socket.write(byte, () => resolve()));
}

describe('a head that arrives a byte at a time', () => {
  it('is served once its last byte is in', async () => {
    const { socket, received } = await openRaw(s.sidecar.port, s.allowed);
    await trickle(socket, 'GET /trickled HTTP/1.1\r\nHost: x\r\nX-One: 1\r\n\r\n');
    await expect.poll(received, { timeout: 5000 }).toMatch(/^HTTP\/1\.1 200 /);
    expect(s.app.seen.map((r) => r.url)).toContain('/trickled');
    socket.destroy();
  });

  it('ending in bare LFs, is refused when they arrive', async () => {
    const { socket, received } = await openRaw(s.sidecar.port, s.allowed);
    await trickle(socket, 'GET /bare-lf HTTP/1.1\nHost: x\n\n');
    await expect.poll(received, { timeout: 5000 }).toMatch(/^HTTP\/1\.1 400 /);
    expect(s.app.seen.map((r) => r.url)).not.toContain('/bare-lf');
    socket.destroy();
  });
});
