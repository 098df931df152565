// Whatever request head h1-parse accepts, Node's own parser (llhttp, behind a real node:http server with its
// default options, fed the same raw bytes) accepts too and reads the same way: the same method, target,
// version, fields (rawHeaders and headers), upgrade or not, expectation or not, and the same body framing —
// the body Node reads is the one our framing says, and a request pipelined after it is the next one Node
// sees. Heads are generated valid and subtly invalid (duplicate or malformed Content-Length, CL+TE, coding
// lists, obs-fold, bare LF/CR, whitespace before colons, bad bytes in names, values and targets, versions,
// methods, target forms). We may refuse more than llhttp; never accept what it refuses or reads otherwise.
import fc from 'fast-check';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedDecoder, isHeadError, parseRequestHead, type RequestHead } from '../../src/proxy/h1-parse.js';

/** What Node's server made of one request on a connection. */
interface NodeEvent {
  kind: 'request' | 'checkContinue' | 'checkExpectation' | 'upgrade' | 'connect' | 'clientError';
  method?: string;
  url?: string;
  minor?: number;
  rawHeaders?: string[];
  headers?: IncomingHttpHeaders;
  keepAlive?: boolean;
  /** The body, once Node has read all of it. */
  body?: string;
}

const NEXT = 'GET /next HTTP/1.1\r\nHost: x\r\n\r\n';
const MAX_SENT_BODY = 64;
const BODY_POOL = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/_-'.slice(0, MAX_SENT_BODY);

const events = new Map<number, NodeEvent[]>();
let wake: (() => void) | undefined;
const record = (socket: Socket, event: NodeEvent) => {
  const port = socket.remotePort ?? -1;
  events.set(port, [...(events.get(port) ?? []), event]);
  wake?.();
};

const server = createServer();
let port = 0;

function onRequest(kind: NodeEvent['kind']) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const event: NodeEvent = {
      kind,
      method: req.method,
      url: req.url,
      minor: req.httpVersionMinor,
      rawHeaders: req.rawHeaders,
      headers: { ...req.headers },
      keepAlive: res.shouldKeepAlive,
    };
    record(req.socket, event);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      event.body = Buffer.concat(chunks).toString('latin1');
      wake?.();
      res.end('ok');
    });
  };
}

beforeAll(async () => {
  server.on('request', onRequest('request'));
  server.on('checkContinue', onRequest('checkContinue'));
  server.on('checkExpectation', onRequest('checkExpectation'));
  for (const kind of ['upgrade', 'connect'] as const) {
    server.on(kind, (req: IncomingMessage, socket: Socket) => {
      record(socket, {
        kind,
        method: req.method,
        url: req.url,
        minor: req.httpVersionMinor,
        rawHeaders: req.rawHeaders,
      });
      socket.destroy();
    });
  }
  server.on('clientError', (_err, socket: Socket) => {
    record(socket, { kind: 'clientError' });
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** Sends `bytes` on a fresh connection; Node's events once `enough` says so, the connection closes, or 1 s. */
async function exchange(bytes: Buffer, enough: (seen: NodeEvent[]) => boolean): Promise<NodeEvent[]> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const local = socket.localPort!;
  let closed = false;
  socket.on('error', () => {});
  socket.on('data', () => {});
  socket.on('close', () => {
    closed = true;
    wake?.();
  });
  const timer = setTimeout(() => {
    closed = true;
    wake?.();
  }, 1000);
  socket.write(bytes);
  while (!closed && !enough(events.get(local) ?? [])) await new Promise<void>((resolve) => (wake = resolve));
  clearTimeout(timer);
  socket.destroy();
  const seen = events.get(local) ?? [];
  events.delete(local);
  return seen;
}

// --- generated heads ------------------------------------------------------------------------------------

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const often = <T>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<T>, validWeight = 12) =>
  fc.oneof({ arbitrary: valid, weight: validWeight }, { arbitrary: invalid, weight: 1 });

const method = often(
  fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH', 'QUERY', 'PROPFIND'),
  fc.constantFrom('get', 'Post', 'FOO', 'CONNECT', 'M-SEARCH', 'PRI', 'GET2', 'G\xc9T', ''),
  6,
);
const originForm = fc
  .string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 24 })
  .map((s) => `/${s}`);
const target = often(
  fc.oneof(
    { arbitrary: originForm, weight: 8 },
    {
      arbitrary: fc.constantFrom(
        '*',
        'http://a.example/x?y',
        'https://a.example:8443',
        'http://[::1]:80/p',
        'https://b-c.d_e~f/?q#',
      ),
      weight: 2,
    },
  ),
  fc.constantFrom('/\xe9', '/a\x01', 'a/b', 'a.example:80', 'http://u@a/', 'http://a#x', 'http:///x', 'ftp://a/', ''),
  6,
);
const version = often(
  fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
  fc.constantFrom('HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'http/1.1', 'HTTP/1.1 ', 'HTTP/11', 'HTTP/1.10'),
);
const separator = often(fc.constant(' '), fc.constantFrom('  ', '\t', ''), 30);
const eol = often(fc.constant('\r\n'), fc.constantFrom('\n', '\r', '\r\r\n'), 40);
const leading = often(fc.constant(''), fc.constantFrom('\r\n', '\r\n\r\n', '\n'), 10);

const name = fc.oneof(
  fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 10 }),
  fc.constantFrom(
    'Accept',
    'accept',
    'X-A',
    'x-a',
    'Cookie',
    'Set-Cookie',
    'set-cookie',
    'Content-Type',
    'User-Agent',
    'Authorization',
    'Referer',
    'Date',
    'Vary',
    'ETag',
    'constructor',
    '__proto__',
  ),
);
const valueChar = often(
  fc.constantFrom(...'abcXYZ019 ,;=/"\\()<>@[]{}?\t\x80\xe9\xff'.split('')),
  fc.constantFrom('\0', '\x7f', '\x0b', '\r', '\n', '\x1f'),
  80,
);
const value = fc.string({ unit: valueChar, maxLength: 16 });
const ows = fc.constantFrom('', '', ' ', '  ', '\t', ' \t');
const framingField = fc.oneof(
  fc.constantFrom('0', '1', '3', '12', '64', '007', '999999999999999').map((v) => `Content-Length: ${v}`),
  fc
    .constantFrom('+5', '-1', '5, 5', '1 2', '0x5', '', '1000000000000000', '5\t', '\t5', ' 5 ', '18446744073709551616')
    .map((v) => `Content-Length:${v}`),
  fc
    .constantFrom('chunked', 'Chunked', ' CHUNKED ', 'chunked\t', 'gzip, chunked', 'chunked, chunked', 'identity', '')
    .map((v) => `Transfer-Encoding: ${v}`),
  fc
    .tuple(
      fc.constantFrom('Connection', 'connection', 'Proxy-Connection'),
      fc.constantFrom(
        'close',
        'keep-alive',
        'Upgrade',
        'upgrade, keep-alive',
        'close\t',
        'foo, CLOSE',
        'keep-alive, close',
        ',,upgrade,,',
        'closed',
        '\tclose',
      ),
    )
    .map(([n, v]) => `${n}: ${v}`),
  fc.constantFrom('websocket', 'h2c', '', ' ').map((v) => `Upgrade: ${v}`),
  fc.constantFrom('100-continue', '100-Continue', 'foo', '100-continue, x').map((v) => `Expect: ${v}`),
);
const badFieldLine = fc.oneof(
  name.map((n) => `${n} : v`),
  name.map((n) => `${n}\t: v`),
  fc.constant(': v'),
  fc.constantFrom(' folded', '\tfolded'),
  name.map((n) => `${n}(x): v`),
  name.map((n) => `${n}\xe9: v`),
  name.map((n) => `${n} v`),
);
const fieldLine = fc.oneof(
  { arbitrary: fc.tuple(name, ows, value, ows).map(([n, a, v, b]) => `${n}:${a}${v}${b}`), weight: 10 },
  { arbitrary: framingField, weight: 4 },
  { arbitrary: badFieldLine, weight: 1 },
);
const hosts = often<readonly string[]>(
  fc.constantFrom(['Host: x'], ['host:a.example:8443 '], ['HOST:']),
  fc.constantFrom([], ['Host: a', 'host: b']),
  10,
);

const chunk = fc.record({
  size: fc.integer({ min: 1, max: 20 }),
  zeros: fc.constantFrom('', '', '0', '00'),
  upper: fc.boolean(),
  ext: fc.constantFrom('', '', ';a', ';a=b', ';a="x y"', ';a="q\\"t";b', ';n=1;m="\xe9\t"'),
});
const chunkedBody = fc
  .record({
    chunks: fc.array(chunk, { maxLength: 4 }),
    lastExt: fc.constantFrom('', ';z'),
    trailers: fc.array(fc.constantFrom('X-T: t', 'x-sum:abc ', 'Y:'), { maxLength: 2 }),
  })
  .map(({ chunks, lastExt, trailers }) => {
    let wire = '';
    let data = '';
    for (const c of chunks) {
      const piece = BODY_POOL.slice(0, c.size);
      const hex = c.size.toString(16);
      wire += `${c.zeros}${c.upper ? hex.toUpperCase() : hex}${c.ext}\r\n${piece}\r\n`;
      data += piece;
    }
    wire += `0${lastExt}\r\n${trailers.map((t) => `${t}\r\n`).join('')}\r\n`;
    return { wire, data };
  });

const generatedRequest = fc.record({
  leading,
  method,
  sp1: separator,
  target,
  sp2: separator,
  version,
  eol,
  hosts,
  fields: fc.array(fc.tuple(fieldLine, eol), { maxLength: 7 }),
  hostAt: fc.nat(),
  body: chunkedBody,
});

type Generated = typeof generatedRequest extends fc.Arbitrary<infer T> ? T : never;

function headText(g: Generated): string {
  const lines = g.fields.map(([line, end]) => line + end);
  const at = lines.length === 0 ? 0 : g.hostAt % (lines.length + 1);
  lines.splice(at, 0, ...g.hosts.map((h) => `${h}\r\n`));
  return `${g.leading}${g.method}${g.sp1}${g.target}${g.sp2}${g.version}${g.eol}${lines.join('')}\r\n`;
}

/** The body our framing reads, as we send it and as it decodes; undefined: too long to send here. */
function bodyFor(head: RequestHead, g: Generated): { wire: string; data: string } | undefined {
  if (head.body.kind === 'none') return { wire: '', data: '' };
  if (head.body.kind === 'chunked') return g.body;
  if (head.body.kind === 'length' && head.body.length <= MAX_SENT_BODY) {
    const data = BODY_POOL.slice(0, head.body.length);
    return { wire: data, data };
  }
  return undefined;
}

function decodeChunked(wire: string): string {
  const decoder = new ChunkedDecoder(1024);
  const parts: Buffer[] = [];
  const buf = Buffer.from(wire, 'latin1');
  const n = decoder.push(buf, 0, (d) => parts.push(d));
  expect(n).toBe(buf.length);
  expect(decoder.done).toBe(true);
  return Buffer.concat(parts).toString('latin1');
}

describe('h1-parse agrees with llhttp', () => {
  it('every request head we accept, Node accepts and reads the same way, body framing included', async () => {
    let acceptedCount = 0;
    let refusedCount = 0;
    await fc.assert(
      fc.asyncProperty(generatedRequest, async (g) => {
        const generated = headText(g);
        const head = parseRequestHead(Buffer.from(generated, 'latin1'), 16 * 1024, 100);
        if (head === undefined || isHeadError(head)) {
          refusedCount++;
          return;
        }
        acceptedCount++;
        // A CRLF inside a generated value can end the head early: what follows it is not head.
        expect(head.headBytes).toBeLessThanOrEqual(generated.length);
        const text = generated.slice(0, head.headBytes);
        const body = bodyFor(head, g);
        if (head.body.kind === 'chunked') expect(decodeChunked(g.body.wire)).toBe(g.body.data);
        const pipelined = body !== undefined && head.keepAlive && !head.upgrade;
        const wire = text + (body?.wire ?? '') + (pipelined ? NEXT : '');
        const expected = head.upgrade ? 1 : pipelined ? 2 : 1;
        const seen = await exchange(Buffer.from(wire, 'latin1'), (s) => {
          if (s.length < expected) return false;
          // Heads whose body we did not send: the head is all Node can give.
          return body === undefined || head.upgrade || s.every((e) => e.body !== undefined);
        });

        const node = seen[0];
        expect(node?.kind, text).toBe(head.upgrade ? 'upgrade' : head.expectContinue ? 'checkContinue' : node?.kind);
        if (!head.upgrade) {
          // Node takes `100-continue` anywhere in the list as a 100-continue; we answer 417 to anything but it alone.
          expect(node.kind === 'request', text).toBe(!head.expectContinue && !head.expectOther);
        }
        expect({ method: node.method, url: node.url, minor: node.minor, rawHeaders: node.rawHeaders }).toEqual({
          method: head.method,
          url: head.url,
          minor: head.minor,
          rawHeaders: head.rawHeaders,
        });
        if (head.upgrade) return;
        expect(node.headers).toEqual({ ...head.headers });
        // We may close where Node would keep the connection (HTTP/1.0 `keep-alive, close`); never the reverse.
        if (head.keepAlive) expect(node.keepAlive).toBe(true);
        if (body === undefined) return;
        expect(node.body).toBe(body.data);
        if (pipelined) {
          expect(seen).toHaveLength(2);
          expect(seen[1]).toMatchObject({ kind: 'request', url: '/next', body: '' });
        }
      }),
      { numRuns: 300 },
    );
    // The generators must keep exercising both sides, or the property says nothing.
    expect(acceptedCount).toBeGreaterThan(40);
    expect(refusedCount).toBeGreaterThan(40);
  }, 20_000);
});
