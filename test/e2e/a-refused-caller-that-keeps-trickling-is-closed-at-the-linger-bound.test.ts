// The other bound of a lingering close (lingering-close.ts, LINGER_MAX_MS, 30 s from the answer): a refused caller
// that keeps sending a byte now and then, never idle long enough for the 2 s bound, is still closed. Without it,
// such a caller would hold its connection (and its place under --max-connections) for as long as it liked.
// Its own file: it waits out the 30 s, beside the other files rather than behind the cases of the lingering test.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { scrapeMetrics } from '../helpers/authz.js';
import { openCaller, requestVia } from '../helpers/client.js';
import { type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(async () => {
  await s?.close();
});

it(
  'a refused caller still sending a byte every 500 ms is closed by the sidecar once the linger bound passes',
  { timeout: 120_000 },
  async () => {
    // Half-open: the caller never answers the sidecar's FIN, so only the sidecar can end this connection.
    const caller = await openCaller(s.sidecar.port, s.denied, true);
    caller.socket.write('POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\nsome of it');
    await expect.poll(caller.received).toMatch(/^HTTP\/1\.1 403 /);
    let sent = 0;
    const trickle = setInterval(() => {
      if (caller.socket.writable) caller.socket.write('x', () => sent++);
    }, 500);
    await caller.closed;
    clearInterval(trickle);
    // The caller kept sending after the answer, past the 2 s idle bound many times over (each write refreshes it):
    // the idle bound did not close this connection. At this bound the sidecar closes at once, as nginx does, so
    // the next byte of the trickle may meet a reset (EPIPE): the caller read its answer long before.
    expect(sent).toBeGreaterThan(4 * 2);
    const active = async () =>
      Number(
        /^spiffe_sidecar_active_connections (\d+)$/m.exec(await scrapeMetrics(s.sidecar.adminAddress().port))?.[1],
      );
    await expect.poll(active).toBe(0);
    expect((await requestVia(s.sidecar.port, s.allowed, { path: '/after-linger' })).status).toBe(200);
  },
);
