// Content-Length frames a message, so the raw HTTP/1.1 engine writes it itself rather than relaying the app's
// text (a review found both): RFC 9110 §8.6, a 204 carries none; RFC 9112 §6.3, a repeated equal length is sent
// once; and the digits are ours, without leading zeros (`010` is 10 to us, 8 to a reader of a leading 0 as octal).
// A HEAD or 304 response keeps the length the app declared; an empty body says 0. The request direction too: the
// app reads the length we framed the caller's body by.
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openCaller } from '../helpers/client.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

/** What the app answers, by request path. */
const ANSWERS: Record<string, string> = {
  '/no-content': 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-App: 1\r\n\r\n',
  '/repeated': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-App: 1\r\ncontent-length: 2\r\n\r\nok',
  '/zeros': 'HTTP/1.1 200 OK\r\nContent-Length: 0002\r\n\r\nok',
  '/head': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n',
  '/not-modified': 'HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n',
  '/empty': 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
  '/upload': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ngot',
};

/** The request heads the app read, in order. */
const heads: string[] = [];

/** A raw app: reads a head (and a body of its Content-Length, read in base 10), answers by path. */
function scriptedApp(socket: Socket): void {
  let pending = Buffer.alloc(0);
  socket.on('error', () => {});
  socket.on('data', (data: Buffer) => {
    pending = Buffer.concat([pending, data]);
    for (;;) {
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = pending.subarray(0, end).toString('latin1');
      const length = Number(/^content-length: *(\d+)/im.exec(head)?.[1] ?? 0);
      if (pending.length < end + 4 + length) return;
      pending = pending.subarray(end + 4 + length);
      heads.push(head);
      const path = head.split(' ')[1];
      socket.write(ANSWERS[path] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    }
  });
}

let s: Scenario;
let app: Server;
beforeAll(async () => {
  app = createTcpServer(scriptedApp);
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  s = await startScenario({ upstream: `http://127.0.0.1:${(app.address() as { port: number }).port}` });
});
afterAll(async () => {
  await s?.close();
  await new Promise((resolve) => app.close(resolve));
});

/** The whole answer to one request on a connection of its own (closed after it): its head lines and body. */
async function exchange(request: string): Promise<{ status: string; fields: string[]; body: string }> {
  const caller = await openCaller(s.sidecar.port, s.allowed);
  caller.socket.write(request);
  await caller.closed;
  const text = caller.received();
  const end = text.indexOf('\r\n\r\n');
  expect(end).toBeGreaterThan(0);
  const [status, ...fields] = text.slice(0, end).split('\r\n');
  return { status, fields, body: text.slice(end + 4) };
}

const get = (path: string, method = 'GET') => `${method} ${path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n`;
const lengths = (fields: string[]) => fields.filter((f) => /^content-length:/i.test(f));

it('a 204 reaches the caller without the Content-Length its app gave it, its other fields kept', async () => {
  const { status, fields, body } = await exchange(get('/no-content'));
  expect(status).toBe('HTTP/1.1 204 No Content');
  expect(lengths(fields)).toEqual([]);
  expect(fields).toContain('X-App: 1');
  expect(body).toBe('');
});

it('a Content-Length the app repeats reaches the caller once', async () => {
  const { status, fields, body } = await exchange(get('/repeated'));
  expect(status).toBe('HTTP/1.1 200 OK');
  expect(lengths(fields)).toEqual(['content-length: 2']);
  expect(body).toBe('ok');
});

it('a Content-Length with leading zeros reaches the caller in plain digits', async () => {
  const { fields, body } = await exchange(get('/zeros'));
  expect(lengths(fields)).toEqual(['content-length: 2']);
  expect(body).toBe('ok');
});

it('a HEAD or 304 response keeps the length the app declared, and an empty body says 0', async () => {
  const head = await exchange(get('/head', 'HEAD'));
  expect(lengths(head.fields)).toEqual(['content-length: 5']);
  expect(head.body).toBe('');
  const notModified = await exchange(get('/not-modified'));
  expect(notModified.status).toBe('HTTP/1.1 304 Not Modified');
  expect(lengths(notModified.fields)).toEqual(['content-length: 7']);
  expect(notModified.body).toBe('');
  const empty = await exchange(get('/empty'));
  expect(lengths(empty.fields)).toEqual(['content-length: 0']);
  expect(empty.body).toBe('');
});

it("the app reads the caller's Content-Length in plain digits: the length the body was framed by", async () => {
  const { body } = await exchange(
    'POST /upload HTTP/1.1\r\nhost: app\r\nconnection: close\r\ncontent-length: 010\r\n\r\n0123456789',
  );
  expect(body).toBe('got');
  const upload = heads.find((h) => h.startsWith('POST /upload '));
  expect(upload).toBeDefined();
  expect(upload).toMatch(/\r\ncontent-length: 10(\r\n|$)/);
  expect(upload).toContain(`x-spiffe-id: ${ALLOWED_ID}`);
});
