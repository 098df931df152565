// The differential test of the raw HTTP/1.1 path (h1-connection.ts) against the node:http one (`--http-engine
// node`): the same generated requests, byte for byte over real mTLS, to two sidecars in front of two echo apps.
// Whatever the raw path delivers, node:http delivers too, identically (method, target, fields in order, body);
// whatever node:http delivers, the raw path delivers too, unless the request is one of the heads the raw path
// refuses on purpose (strictness: anything a parser could read two ways), and then it answers 4xx/5xx.
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, type SeenRequest, startEchoApp } from '../helpers/echo-app.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let s: Scenario;
let nodeApp: EchoApp;
let nodeSidecar: TestSidecar;
beforeAll(async () => {
  s = await startScenario({ 'http-engine': 'raw', 'log-level': 'warn' });
  nodeApp = await startEchoApp();
  nodeSidecar = await startTestSidecar({
    upstream: nodeApp.url,
    'mtls-cert-file': s.files.certFile,
    'mtls-key-file': s.files.keyFile,
    'mtls-ca-file': s.files.caFile,
    allow: [ALLOWED_ID],
    'http-engine': 'node',
    'log-level': 'warn',
  });
});
afterAll(async () => {
  await nodeSidecar?.close();
  await nodeApp?.close();
  await s?.close();
});

interface Case {
  readonly bytes: Buffer;
  /**
   * A head the raw path refuses on purpose where node:http may read it (chunked over HTTP/1.0 among them:
   * RFC 9112 §6.1 has it treated as faulty).
   */
  readonly strict: boolean;
}

const token = fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/);
const visible = fc.stringMatching(/^[!-~]([ !-~]{0,30}[!-~])?$/);
const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD');
const path = fc
  .tuple(fc.array(fc.stringMatching(/^[a-zA-Z0-9._~-]{1,8}$/), { maxLength: 4 }), fc.option(visible.map(encodeURI)))
  .map(([segments, query]) => `/${segments.join('/')}${query === null ? '' : `?${query.replaceAll('#', '%23')}`}`);
/** Fields a caller may send, ours to strip among them. */
const field = fc.oneof(
  fc.tuple(
    token.map((t) => `x-${t}`),
    visible,
  ),
  fc.tuple(fc.constantFrom('Accept', 'accept', 'ACCEPT', 'Cookie', 'User-Agent', 'Content-Type'), visible),
  fc.tuple(
    fc.constantFrom(
      'x-spiffe-id',
      'X-SPIFFE-ID',
      'x_spiffe_id',
      'X-Forwarded-For',
      'x-forwarded-proto',
      'Forwarded',
      'x-request-id',
      'x-auth-method',
      'x-forwarded-client-cert',
    ),
    visible,
  ),
  // (Every request ends with `Connection: close`: a `keep-alive` beside it is read differently by HTTP/1.0 servers.)
  fc.tuple(fc.constant('Connection'), fc.constantFrom('x-drop-me', 'TE, x-drop-me')),
  fc.tuple(fc.constantFrom('TE', 'Keep-Alive', 'Trailer', 'Proxy-Connection', 'x-drop-me'), visible),
  fc.tuple(
    fc.constant('traceparent'),
    fc.constantFrom('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', '00-zz-yy-01', 'garbage'),
  ),
);
const bodyBytes = fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a));
type Body =
  | { kind: 'none' }
  | { kind: 'length'; data: Buffer }
  | { kind: 'chunked'; parts: Buffer[]; ext: boolean; trailer: boolean };
const body: fc.Arbitrary<Body> = fc.oneof(
  fc.constant<Body>({ kind: 'none' }),
  bodyBytes.map((data): Body => ({ kind: 'length', data })),
  fc
    .tuple(
      fc.array(
        bodyBytes.filter((b) => b.length > 0),
        { maxLength: 4 },
      ),
      fc.boolean(),
      fc.boolean(),
    )
    .map(([parts, ext, trailer]): Body => ({ kind: 'chunked', parts, ext, trailer })),
);
/** One way, at most, of making the head ambiguous or malformed (half of the requests have none). */
const breaker = fc.oneof(
  fc.constant('none'),
  fc.constantFrom(
    'duplicate-content-length',
    'content-length-and-chunked',
    'obs-fold',
    'bare-lf',
    'space-before-colon',
    'lower-case-method',
    'nul-in-value',
    'chunked-gzip',
    'no-host',
    'http-1.0',
    'plus-content-length',
  ),
);

function frame(m: string, p: string, fields: [string, string][], b: Body, broken: string, id: number): Case {
  const lines = [
    `${broken === 'lower-case-method' ? m.toLowerCase() : m} ${p} ${broken === 'http-1.0' ? 'HTTP/1.0' : 'HTTP/1.1'}`,
  ];
  if (broken !== 'no-host') lines.push('Host: app.test');
  lines.push(`x-case: ${id}`);
  for (const [name, value] of fields) lines.push(`${name}: ${value}`);
  let payload: Buffer = Buffer.alloc(0);
  if (b.kind === 'length') {
    lines.push(`Content-Length: ${broken === 'plus-content-length' ? '+' : ''}${b.data.length}`);
    if (broken === 'duplicate-content-length') lines.push(`Content-Length: ${b.data.length}`);
    if (broken === 'content-length-and-chunked') lines.push('Transfer-Encoding: chunked');
    payload = b.data;
  } else if (b.kind === 'chunked') {
    lines.push(broken === 'chunked-gzip' ? 'Transfer-Encoding: gzip, chunked' : 'Transfer-Encoding: chunked');
    if (broken === 'content-length-and-chunked') lines.push('Content-Length: 5');
    const pieces: Buffer[] = [];
    for (const part of b.parts)
      pieces.push(
        Buffer.from(`${part.length.toString(16)}${b.ext ? ';name=value' : ''}\r\n`),
        part,
        Buffer.from('\r\n'),
      );
    pieces.push(Buffer.from(b.trailer ? '0\r\nx-trailer: t\r\n\r\n' : '0\r\n\r\n'));
    payload = Buffer.concat(pieces);
  }
  if (broken === 'obs-fold') lines.push('x-folded: a', ' continued');
  if (broken === 'space-before-colon') lines.push('x-spaced : v');
  if (broken === 'nul-in-value') lines.push('x-nul: a\u0000b');
  lines.push('Connection: close');
  const eol = broken === 'bare-lf' ? '\n' : '\r\n';
  const head = Buffer.from(`${lines.join(eol)}${eol}${eol}`, 'latin1');
  return {
    bytes: Buffer.concat([head, payload]),
    strict: broken !== 'none' && (broken !== 'http-1.0' || b.kind === 'chunked'),
  };
}

/** The request on a new mTLS connection; everything that came back once the sidecar closed it. */
async function exchange(port: number, bytes: Buffer): Promise<string> {
  const socket: TLSSocket = tlsConnect({
    host: '127.0.0.1',
    port,
    cert: s.allowed.chainPem,
    key: s.allowed.keyPem,
    rejectUnauthorized: false,
  });
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  socket.on('error', () => {});
  socket.once('secureConnect', () => socket.write(bytes));
  // Every request says `Connection: close`: a sidecar that keeps the connection open past its answer fails the case.
  const closed = await Promise.race([
    new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000).unref()),
  ]);
  socket.destroy();
  const answer = Buffer.concat(chunks).toString('latin1');
  if (!closed) throw new Error(`port ${port} kept the connection open after: ${JSON.stringify(answer.slice(0, 200))}`);
  return answer;
}

/** What an app saw of a request, without what differs by design (the request id, the connection's fields). */
function delivered(app: EchoApp, id: number): Omit<SeenRequest, 'headers'> | undefined {
  const seen = app.seen.find((r) => r.headers['x-case'] === String(id));
  if (!seen) return undefined;
  const rawHeaders: string[] = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2) {
    const name = seen.rawHeaders[i].toLowerCase();
    // node:http's client says `Connection: keep-alive`, and frames a POST or PUT without a body as an empty
    // chunked one; the raw path sends what the caller sent. Neither changes what the app reads.
    if (name === 'connection') continue;
    if (seen.bodyLength === 0 && (name === 'transfer-encoding' || name === 'content-length')) continue;
    if (name === 'x-request-id') {
      rawHeaders.push(name, '<id>');
      continue;
    }
    rawHeaders.push(seen.rawHeaders[i], seen.rawHeaders[i + 1]);
  }
  return { method: seen.method, url: seen.url, rawHeaders, bodySha256: seen.bodySha256, bodyLength: seen.bodyLength };
}

const statusOf = (answer: string) => Number(/^HTTP\/1\.[01] (\d{3}) /.exec(answer)?.[1] ?? 0);

describe('the raw HTTP/1.1 path delivers to the app exactly what node:http does', () => {
  it('for a thousand generated requests, ambiguous and malformed ones among them', { timeout: 240_000 }, async () => {
    let id = 0;
    let both = 0;
    let refusedOnPurpose = 0;
    await fc.assert(
      fc.asyncProperty(method, path, fc.array(field, { maxLength: 8 }), body, breaker, async (m, p, f, b, broken) => {
        const n = ++id;
        const c = frame(m, p, f, b, broken, n);
        const [rawAnswer, nodeAnswer] = await Promise.all([
          exchange(s.sidecar.port, c.bytes),
          exchange(nodeSidecar.port, c.bytes),
        ]);
        const raw = delivered(s.app, n);
        const node = delivered(nodeApp, n);
        if (raw !== undefined) {
          expect(node).toEqual(raw);
          expect(statusOf(rawAnswer)).toBe(statusOf(nodeAnswer));
          both++;
        } else if (node !== undefined) {
          expect({ strict: c.strict, head: c.bytes.subarray(0, 400).toString('latin1') }).toMatchObject({
            strict: true,
          });
          expect(statusOf(rawAnswer)).toBeGreaterThanOrEqual(400);
          expect(rawAnswer).toMatch(/"reason":"[a-z_]+"/);
          refusedOnPurpose++;
        } else {
          expect(statusOf(rawAnswer) === 0 || statusOf(rawAnswer) >= 400).toBe(true);
        }
      }),
      { numRuns: Number(process.env.DIFF_RUNS ?? 1000) },
    );
    // Not vacuous: many requests were delivered by both, and many malformed ones were met.
    expect(both).toBeGreaterThan(id * 0.3);
    expect(id - both).toBeGreaterThan(id * 0.2);
    expect(refusedOnPurpose).toBeGreaterThan(0);
  });
});
