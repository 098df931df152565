// Back-pressure on our own answers. A caller with a valid SVID that no rule allows pipelines requests and never
// reads: each is refused at once (a 403 needs no app), so nothing waits on the app and only the caller's reading
// can hold the engine back. It must: the next request is parsed only once our answers have drained, as node:http
// does. Before, every request was answered into the socket's write queue and memory grew without bound (~1 GB in
// 10 s, a review's proof), until --response-write-timeout cut the connection.
//
// What shows it without timing: the kernel's buffers hold a bounded amount of our answers (~170 bytes each), and
// the caller's requests are ~30 bytes, so once the engine stops, the caller can still hand the kernel many
// requests that are never answered. Without the pause nearly every request sent is answered.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sample, scrapeMetrics } from '../helpers/authz.js';
import { openCaller, requestVia } from '../helpers/client.js';
import { type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  // warn: no access line per refused request (the metric counts them).
  s = await startScenario({ 'log-level': 'warn', 'response-write-timeout': '1s' });
});
afterAll(async () => {
  await s?.close();
});

const REQUEST = 'GET / HTTP/1.1\r\nhost: x\r\n\r\n';
const BATCH = 1000;
/** Enough to show the difference: 11 MB of requests, several times what the loopback buffers hold of answers. */
const MAX_REQUESTS = 400_000;

it('the engine stops answering a caller that reads nothing, and --response-write-timeout closes it', async () => {
  const caller = await openCaller(s.sidecar.port, s.denied);
  caller.socket.pause();
  const batch = Buffer.from(REQUEST.repeat(BATCH));
  let sent = 0;
  let closed = false;
  void caller.closed.then(() => (closed = true));
  while (!closed && sent < MAX_REQUESTS) {
    const flowing = caller.socket.write(batch);
    sent += BATCH;
    if (!flowing) {
      await new Promise<void>((resolve) => {
        const done = () => {
          caller.socket.off('drain', done);
          resolve();
        };
        caller.socket.on('drain', done);
        void caller.closed.then(done);
      });
    }
  }
  // The sidecar ends it: the caller has not read one answer, so the write timeout cuts it.
  await caller.closed;
  await expect
    .poll(() => s.sidecar.logs.some((l) => l.event === 'request_timeout' && l.reason === 'response_write_timeout'))
    .toBe(true);
  const answered = sample(await scrapeMetrics(s.sidecar.adminAddress().port), 'spiffe_sidecar_requests_total', {
    status_class: '4xx',
  });
  expect(answered).toBeGreaterThan(0);
  // Measured: ~16% with the pause (34k of 205k), ~70% without it (261k of 372k, and 190 MB of RSS in 1 s).
  expect(answered).toBeLessThan(sent / 2);
  // The sidecar is unharmed: the next caller is served.
  expect((await requestVia(s.sidecar.port, s.allowed, { path: '/after' })).status).toBe(200);
});
