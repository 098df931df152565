// A response to HEAD (or a 204/304) has no body, whatever its Content-Length says. An app that sends one anyway,
// a little late (a review's proof: a sequential app streaming a file it should not have), would have those bytes
// read as the response to the next request on that app connection, which the pool may give to another caller.
// So an app connection whose bodiless response announced a body never goes back to the pool: the next caller's
// request goes on a new app connection, and what the app sends late on the old one reaches no other caller. The
// same caller's next request may still use it (HEAD with a length is what most servers send).
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openCaller, requestVia } from '../helpers/client.js';
import { type Scenario, startScenario } from '../helpers/scenario.js';

const LATE = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Evil: yes\r\n\r\nEVIL!';

/** Each request the app read: its path and the app connection it came on. */
const seen: { path: string; connection: number }[] = [];
/** The app connection that answered the HEAD, whose late body is sent once the next request has arrived. */
let headSocket: Socket | undefined;
let connections = 0;

function app(socket: Socket): void {
  const connection = ++connections;
  let pending = '';
  socket.on('error', () => {});
  socket.on('data', (data: Buffer) => {
    pending += data.toString('latin1');
    let end: number;
    while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
      const [method, path] = pending.slice(0, end).split(' ');
      pending = pending.slice(end + 4);
      seen.push({ path, connection });
      if (method === 'HEAD') {
        headSocket = socket;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${LATE.length}\r\n\r\n`);
      } else {
        // The next request has arrived: the app now sends the HEAD's body it should never have sent.
        headSocket?.write(LATE);
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    }
  });
}

let s: Scenario;
let server: Server;
beforeAll(async () => {
  server = createTcpServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  s = await startScenario({ upstream: `http://127.0.0.1:${(server.address() as { port: number }).port}` });
});
afterAll(async () => {
  await s?.close();
  await new Promise((resolve) => server.close(resolve));
});

it("the next caller's request goes on a new app connection, and gets its own answer", async () => {
  const first = await openCaller(s.sidecar.port, s.allowed);
  first.socket.write('HEAD /file HTTP/1.1\r\nhost: app\r\n\r\n');
  await expect.poll(first.received).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n$/);
  // The caller leaves: a reusable app connection would go to the pool now.
  first.socket.destroy();
  await first.closed;

  const next = await requestVia(s.sidecar.port, s.allowed, { path: '/victim' });
  expect(next.status).toBe(200);
  expect(next.body).toBe('ok');
  expect(next.headers['x-evil']).toBeUndefined();
  const head = seen.find((r) => r.path === '/file');
  const victim = seen.find((r) => r.path === '/victim');
  expect(head).toBeDefined();
  expect(victim).toBeDefined();
  expect(victim!.connection).not.toBe(head!.connection);
});

it("the same caller's next request still uses that app connection: HEAD with a length is common", async () => {
  const caller = await openCaller(s.sidecar.port, s.allowed);
  caller.socket.write('HEAD /first-head HTTP/1.1\r\nhost: app\r\n\r\n');
  await expect.poll(caller.received).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n$/);
  caller.socket.write('HEAD /second-head HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n');
  await caller.closed;
  const first = seen.find((r) => r.path === '/first-head');
  const second = seen.find((r) => r.path === '/second-head');
  expect(second?.connection).toBe(first?.connection);
});
