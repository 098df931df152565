// h1-parse: request heads, response heads and chunked bodies as tables — what is accepted and how it is
// read, what is refused and with which status and reason — and the chunked decoder fed in every split.
import { describe, expect, it } from 'vitest';
import {
  type BodyFraming,
  ChunkedDecoder,
  chunkHeader,
  type HeadError,
  isHeadError,
  LAST_CHUNK,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  type ResponseHead,
} from '../../src/proxy/h1-parse.js';

const MAX_BYTES = 16 * 1024;
const MAX_COUNT = 100;

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const request = (s: string, maxBytes = MAX_BYTES, maxCount = MAX_COUNT) =>
  parseRequestHead(bytes(s), maxBytes, maxCount);
const accepted = (s: string): RequestHead => {
  const head = request(s);
  if (head === undefined || isHeadError(head)) throw new Error(`refused: ${JSON.stringify(head)}`);
  return head;
};
const response = (s: string, method = 'GET', maxBytes = MAX_BYTES) => parseResponseHead(bytes(s), maxBytes, method);
const answered = (s: string, method = 'GET'): ResponseHead => {
  const head = response(s, method);
  if (head === undefined || isHeadError(head)) throw new Error(`refused: ${JSON.stringify(head)}`);
  return head;
};

describe('parseRequestHead: an ordinary request', () => {
  it('reads method, target, version, fields, framing and the head length', () => {
    const text =
      'POST /api/items?x=1 HTTP/1.1\r\nHost: a.example\r\nContent-Type:application/json \r\nContent-Length: 2\r\n\r\n';
    const head = accepted(`${text}{}`);
    expect(head).toEqual({
      method: 'POST',
      url: '/api/items?x=1',
      minor: 1,
      rawHeaders: ['Host', 'a.example', 'Content-Type', 'application/json', 'Content-Length', '2'],
      headers: { host: 'a.example', 'content-type': 'application/json', 'content-length': '2' },
      body: { kind: 'length', length: 2 },
      keepAlive: true,
      upgrade: false,
      expectContinue: false,
      expectOther: false,
      headBytes: text.length,
    });
  });

  it('decodes names and values as latin1, trims OWS from values, keeps inner whitespace', () => {
    const head = accepted(
      'GET / HTTP/1.1\r\nHost: x\r\nX-Obs: \t caf\xe9 \xff\t\r\nX-In: a \t b\r\nX-Empty:   \r\n\r\n',
    );
    expect(head.rawHeaders).toEqual(['Host', 'x', 'X-Obs', 'caf\xe9 \xff', 'X-In', 'a \t b', 'X-Empty', '']);
  });

  it("builds headers with Node's rules: set-cookie a list, cookie joined by '; ', singletons keep the first", () => {
    const head = accepted(
      'GET / HTTP/1.1\r\nHost: x\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nCookie: c=3\r\nCOOKIE: d=4\r\n' +
        'Content-Type: text/a\r\ncontent-type: text/b\r\nUser-Agent: u1\r\nUser-Agent: u2\r\n' +
        'Accept: a\r\nACCEPT: b\r\nX-Custom: 1\r\nx-custom: 2\r\n\r\n',
    );
    expect({ ...head.headers }).toEqual({
      host: 'x',
      'set-cookie': ['a=1', 'b=2'],
      cookie: 'c=3; d=4',
      'content-type': 'text/a',
      'user-agent': 'u1',
      accept: 'a, b',
      'x-custom': '1, 2',
    });
  });

  it('holds fields named like Object members as Node does: constructor as a field, __proto__ not at all', () => {
    const head = accepted('GET / HTTP/1.1\r\nHost: x\r\nconstructor: c\r\n__proto__: p\r\n\r\n');
    expect(head.headers.constructor).toBe('c');
    expect(Object.keys(head.headers)).toEqual(['host', 'constructor']);
    expect(Object.getPrototypeOf(head.headers)).toBe(Object.prototype);
    expect(head.rawHeaders).toEqual(['Host', 'x', 'constructor', 'c', '__proto__', 'p']);
  });

  it('skips empty lines before the request line, and counts them in headBytes', () => {
    const text = '\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n';
    expect(accepted(text)).toMatchObject({ method: 'GET', url: '/', headBytes: text.length });
  });

  it('ends at the first empty line: what follows (a body, the next request) is not read', () => {
    const text = 'GET /a HTTP/1.1\r\nHost: x\r\n\r\n';
    expect(accepted(`${text}GET /b HTTP/1.1\r\nHost: x\r\n\r\n`)).toMatchObject({ url: '/a', headBytes: text.length });
  });

  it('accepts HTTP/1.0 without Host, absolute-form and OPTIONS *', () => {
    expect(accepted('GET / HTTP/1.0\r\n\r\n')).toMatchObject({ minor: 0, keepAlive: false, rawHeaders: [] });
    expect(accepted('GET https://a.example:8443/p?q HTTP/1.1\r\nHost: a\r\n\r\n').url).toBe(
      'https://a.example:8443/p?q',
    );
    expect(accepted('GET http://[::1]:80 HTTP/1.1\r\nHost: a\r\n\r\n').url).toBe('http://[::1]:80');
    expect(accepted('OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n').url).toBe('*');
  });

  it('accepts every visible ASCII byte in an origin-form target', () => {
    let target = '/';
    for (let c = 0x21; c <= 0x7e; c++) target += String.fromCharCode(c);
    expect(accepted(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`).url).toBe(target);
  });
});

describe('parseRequestHead: incomplete heads and the limits', () => {
  const whole = 'POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n';

  it('every proper prefix of a valid head is incomplete', () => {
    for (let n = 0; n < whole.length; n++) expect(request(whole.slice(0, n)), `${n} bytes`).toBeUndefined();
    expect(isHeadError(request(whole))).toBe(false);
  });

  it('more bytes than the limit without a complete head: 431; a complete head over the limit: 431 too', () => {
    const big = `GET / HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(200)}\r\n`;
    expect(request(big, 100)).toEqual({ status: 431, reason: 'headers_too_large' });
    expect(request(`${big}\r\n`, 100)).toEqual({ status: 431, reason: 'headers_too_large' });
    expect(request(`${big}\r\n`, big.length + 2)).toMatchObject({ headBytes: big.length + 2 });
    expect(request(`${big}\r\n`, big.length + 1)).toEqual({ status: 431, reason: 'headers_too_large' });
    expect(request(big, big.length)).toBeUndefined();
  });

  it('empty lines before the request count against the limit', () => {
    expect(request('\r\n'.repeat(100), 100)).toEqual({ status: 431, reason: 'headers_too_large' });
  });

  it('a bare LF in an incomplete head is refused at once rather than waited on', () => {
    expect(request('GET / HTTP/1.1\nHost: x\n')).toEqual({ status: 400, reason: 'bad_request_line' });
    expect(request('GET / HTTP/1.1\r\nHost: x\n')).toEqual({ status: 400, reason: 'bad_header_field' });
    expect(request('\nGET / HTTP/1.1\r\n')).toEqual({ status: 400, reason: 'bad_request_line' });
  });

  it('fields past the maximum count: 431', () => {
    const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: v\r\n`).join('');
    expect(isHeadError(request(`GET / HTTP/1.1\r\n${fields(4)}Host: x\r\n\r\n`, MAX_BYTES, 5))).toBe(false);
    expect(request(`GET / HTTP/1.1\r\n${fields(5)}Host: x\r\n\r\n`, MAX_BYTES, 5)).toEqual({
      status: 431,
      reason: 'too_many_headers',
    });
  });
});

const H = 'Host: x\r\n';
const refusals: [what: string, head: string, expected: HeadError][] = [
  // request line
  ['lower-case method', `get / HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_method' }],
  ['mixed-case method', `Get / HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_method' }],
  ['a method with a digit', `GET2 / HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_method' }],
  ['a 21-letter method', `${'A'.repeat(21)} / HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_method' }],
  ['a method Node does not know', `FOO / HTTP/1.1\r\n${H}\r\n`, { status: 501, reason: 'unsupported_method' }],
  ['CONNECT', `CONNECT a:443 HTTP/1.1\r\n${H}\r\n`, { status: 501, reason: 'unsupported_method' }],
  ['PRI (the HTTP/2 preface)', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', { status: 501, reason: 'unsupported_method' }],
  ['two spaces after the method', `GET  / HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['two spaces before the version', `GET /  HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['HTAB as separator', `GET\t/ HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['no version (HTTP/0.9)', `GET /\r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['a space after the version', `GET / HTTP/1.1 \r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['lower-case http', `GET / http/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['HTTP/1.10', `GET / HTTP/1.10\r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['HTTP/11', `GET / HTTP/11\r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['HTTP/2.0', `GET / HTTP/2.0\r\n${H}\r\n`, { status: 505, reason: 'http_version_not_supported' }],
  ['HTTP/1.2', `GET / HTTP/1.2\r\n${H}\r\n`, { status: 505, reason: 'http_version_not_supported' }],
  ['HTTP/0.9', `GET / HTTP/0.9\r\n${H}\r\n`, { status: 505, reason: 'http_version_not_supported' }],
  ['a bare LF after the request line', `GET / HTTP/1.1\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['a bare CR after the request line', `GET / HTTP/1.1\r${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  ['a bare LF before the request line', `\nGET / HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_line' }],
  // request-target
  ['a byte above 0x7E in the target', `GET /\xe9 HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['a control byte in the target', `GET /\x01 HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['a relative target', `GET a/b HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['an authority target', `GET a.example:80 HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['* for GET', `GET * HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['*x for OPTIONS', `OPTIONS *x HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['another scheme', `GET ftp://a/ HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['an empty authority', `GET http:///x HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['userinfo', `GET http://u@a/ HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['an empty port', `GET http://a:/ HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['a named port', `GET http://a:b/ HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  ['^ in a host', `GET http://a^b/ HTTP/1.1\r\n${H}\r\n`, { status: 400, reason: 'bad_request_target' }],
  [
    'a fragment in absolute-form',
    `GET http://a/#x HTTP/1.1\r\n${H}\r\n`,
    { status: 400, reason: 'bad_request_target' },
  ],
  // field lines
  ['a space before the colon', `GET / HTTP/1.1\r\n${H}X : y\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['a tab before the colon', `GET / HTTP/1.1\r\n${H}X\t: y\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['an empty name', `GET / HTTP/1.1\r\n${H}: y\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['no colon', `GET / HTTP/1.1\r\n${H}X y\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['a non-token name', `GET / HTTP/1.1\r\n${H}X(y): z\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['a latin1 name', `GET / HTTP/1.1\r\n${H}X\xe9: z\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['obs-fold', `GET / HTTP/1.1\r\n${H}X: a\r\n b\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['obs-fold by tab', `GET / HTTP/1.1\r\n${H}X: a\r\n\tb\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['a first line folded', `GET / HTTP/1.1\r\n ${H}\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['NUL in a value', `GET / HTTP/1.1\r\n${H}X: a\0b\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['DEL in a value', `GET / HTTP/1.1\r\n${H}X: a\x7fb\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['a control byte in a value', `GET / HTTP/1.1\r\n${H}X: a\x0bb\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['a bare CR in a value', `GET / HTTP/1.1\r\n${H}X: a\rb\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['a bare LF ending a field', `GET / HTTP/1.1\r\n${H}X: a\n\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  ['a bare LF ending the head', `GET / HTTP/1.1\r\n${H}\n\r\n\r\n`, { status: 400, reason: 'bad_header_field' }],
  // Content-Length
  [
    'a signed length',
    `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\n`,
    { status: 400, reason: 'bad_content_length' },
  ],
  [
    'a negative length',
    `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`,
    { status: 400, reason: 'bad_content_length' },
  ],
  ['an empty length', `POST / HTTP/1.1\r\n${H}Content-Length:\r\n\r\n`, { status: 400, reason: 'bad_content_length' }],
  [
    'a length list',
    `POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\n`,
    { status: 400, reason: 'bad_content_length' },
  ],
  [
    'a spaced length',
    `POST / HTTP/1.1\r\n${H}Content-Length: 1 2\r\n\r\n`,
    { status: 400, reason: 'bad_content_length' },
  ],
  ['a hex length', `POST / HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\n`, { status: 400, reason: 'bad_content_length' }],
  [
    'a tab after the length (llhttp refuses it)',
    `POST / HTTP/1.1\r\n${H}Content-Length: 5\t\r\n\r\n`,
    { status: 400, reason: 'bad_content_length' },
  ],
  [
    '16 digits',
    `POST / HTTP/1.1\r\n${H}Content-Length: 1000000000000000\r\n\r\n`,
    { status: 400, reason: 'bad_content_length' },
  ],
  [
    'two identical lengths',
    `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\ncontent-length: 5\r\n\r\n`,
    { status: 400, reason: 'duplicate_content_length' },
  ],
  [
    'length and chunked',
    `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`,
    { status: 400, reason: 'content_length_with_transfer_encoding' },
  ],
  // Transfer-Encoding
  [
    'chunked twice in a list',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n`,
    { status: 400, reason: 'bad_transfer_encoding' },
  ],
  [
    'chunked in two fields',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`,
    { status: 400, reason: 'bad_transfer_encoding' },
  ],
  [
    'gzip, chunked',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n`,
    { status: 501, reason: 'unsupported_transfer_coding' },
  ],
  [
    'identity',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\n`,
    { status: 501, reason: 'unsupported_transfer_coding' },
  ],
  [
    'an empty coding',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\r\n\r\n`,
    { status: 501, reason: 'unsupported_transfer_coding' },
  ],
  [
    'chunked with a tab after it (llhttp refuses it)',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\t\r\n\r\n`,
    { status: 400, reason: 'bad_transfer_encoding' },
  ],
  [
    'chunked on HTTP/1.0',
    'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n',
    { status: 400, reason: 'bad_transfer_encoding' },
  ],
  [
    'a tab in Connection (llhttp reads `upgrade\\t` as no upgrade)',
    `GET / HTTP/1.1\r\n${H}Connection: upgrade\t\r\nUpgrade: websocket\r\n\r\n`,
    { status: 400, reason: 'bad_connection' },
  ],
  // Host
  ['no Host on HTTP/1.1', 'GET / HTTP/1.1\r\nX: y\r\n\r\n', { status: 400, reason: 'missing_host' }],
  ['two Host fields', `GET / HTTP/1.1\r\n${H}host: x\r\n\r\n`, { status: 400, reason: 'duplicate_host' }],
  ['two Host fields on HTTP/1.0', `GET / HTTP/1.0\r\n${H}HOST: y\r\n\r\n`, { status: 400, reason: 'duplicate_host' }],
];

describe('parseRequestHead refuses', () => {
  it.each(refusals)('%s', (_what, head, expected) => {
    expect(request(head)).toEqual(expected);
  });
});

describe('parseRequestHead: body framing', () => {
  const framing: [what: string, fields: string, minor: 0 | 1, body: BodyFraming][] = [
    ['no framing field', '', 1, { kind: 'none' }],
    ['Content-Length: 0', 'Content-Length: 0\r\n', 1, { kind: 'none' }],
    ['Content-Length with leading zeros', 'Content-Length: 007\r\n', 1, { kind: 'length', length: 7 }],
    ['Content-Length with OWS', 'content-length:\t 12 \r\n', 1, { kind: 'length', length: 12 }],
    ['15 digits', 'Content-Length: 999999999999999\r\n', 1, { kind: 'length', length: 999999999999999 }],
    ['chunked', 'Transfer-Encoding: chunked\r\n', 1, { kind: 'chunked' }],
    ['Chunked, any case, with spaces', 'transfer-encoding:  CHUNKED \r\n', 1, { kind: 'chunked' }],
    ['Content-Length on HTTP/1.0', 'Content-Length: 3\r\n', 0, { kind: 'length', length: 3 }],
  ];
  it.each(framing)('%s', (_what, fields, minor, body) => {
    expect(accepted(`POST / HTTP/1.${minor}\r\nHost: x\r\n${fields}\r\n`).body).toEqual(body);
  });
});

describe('parseRequestHead: keep-alive, upgrade and expectations', () => {
  const flags: [what: string, version: string, fields: string, expected: Partial<RequestHead>][] = [
    ['HTTP/1.1 keeps alive', '1.1', '', { keepAlive: true }],
    ['HTTP/1.1 with close', '1.1', 'Connection: close\r\n', { keepAlive: false }],
    ['close among tokens, any case', '1.1', 'Connection: foo, CLOSE\r\n', { keepAlive: false }],
    ['close in a second Connection field', '1.1', 'Connection: foo\r\nconnection: close\r\n', { keepAlive: false }],
    [
      'Proxy-Connection: close (llhttp reads it as Connection)',
      '1.1',
      'Proxy-Connection: close\r\n',
      { keepAlive: false },
    ],
    ['a token that only contains close', '1.1', 'Connection: closed\r\n', { keepAlive: true }],
    ['X-Connection is not Connection', '1.1', 'X-Connection: close\r\n', { keepAlive: true }],
    ['HTTP/1.0 closes', '1.0', '', { keepAlive: false }],
    ['HTTP/1.0 with keep-alive', '1.0', 'Connection: Keep-Alive\r\n', { keepAlive: true }],
    [
      'HTTP/1.0 with keep-alive and close: close wins',
      '1.0',
      'Connection: keep-alive, close\r\n',
      { keepAlive: false },
    ],
    ['an upgrade', '1.1', 'Connection: Upgrade\r\nUpgrade: websocket\r\n', { upgrade: true }],
    ['upgrade in a token list', '1.1', 'Connection: keep-alive, upgrade\r\nUpgrade: h2c\r\n', { upgrade: true }],
    ['Upgrade without the Connection token', '1.1', 'Upgrade: websocket\r\n', { upgrade: false }],
    ['the Connection token without Upgrade', '1.1', 'Connection: upgrade\r\n', { upgrade: false }],
    ['an empty Upgrade', '1.1', 'Connection: upgrade\r\nUpgrade: \r\n', { upgrade: false }],
    ['Expect: 100-continue', '1.1', 'Expect: 100-Continue\r\n', { expectContinue: true, expectOther: false }],
    ['another expectation', '1.1', 'Expect: 100-continue-please\r\n', { expectContinue: false, expectOther: true }],
    ['two expectations', '1.1', 'Expect: 100-continue\r\nExpect: x\r\n', { expectContinue: false, expectOther: true }],
    ['Expect on HTTP/1.0 is ignored', '1.0', 'Expect: 100-continue\r\n', { expectContinue: false, expectOther: false }],
  ];
  it.each(flags)('%s', (_what, version, fields, expected) => {
    expect(accepted(`GET / HTTP/${version}\r\nHost: x\r\n${fields}\r\n`)).toMatchObject(expected);
  });
});

describe('parseResponseHead', () => {
  it('reads status, version, fields, framing and the head length; the reason phrase is ignored', () => {
    const text = 'HTTP/1.1 201 Cr\x01eat\xe9d\r\nContent-Length: 5\r\nX: y \r\n\r\n';
    expect(answered(`${text}hello`)).toEqual({
      status: 201,
      minor: 1,
      rawHeaders: ['Content-Length', '5', 'X', 'y'],
      body: { kind: 'length', length: 5 },
      keepAlive: true,
      contentLength: 5,
      headBytes: text.length,
    });
  });

  it('a bodiless response keeps the length it declares, and says when its framing announces a body', () => {
    const head = (text: string, method = 'GET') => parseResponseHead(Buffer.from(text), 16_384, method);
    expect(head('HTTP/1.1 200 OK\r\nContent-Length: 0005\r\n\r\n', 'HEAD')).toMatchObject({
      body: { kind: 'none' },
      contentLength: 5,
      announcesBody: true,
    });
    expect(head('HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n')).toMatchObject({
      body: { kind: 'none' },
      announcesBody: true,
    });
    for (const bodiless of [
      'HTTP/1.1 204 No Content\r\n\r\n',
      'HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    ]) {
      expect(head(bodiless), bodiless).not.toHaveProperty('announcesBody');
    }
  });

  it('every proper prefix of a valid head is incomplete', () => {
    const whole = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
    for (let n = 0; n < whole.length; n++) expect(response(whole.slice(0, n)), `${n} bytes`).toBeUndefined();
  });

  const framing: [what: string, head: string, method: string, body: BodyFraming, keepAlive: boolean][] = [
    ['no reason phrase', 'HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n', 'GET', { kind: 'length', length: 1 }, true],
    [
      'an empty reason phrase',
      'HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n',
      'GET',
      { kind: 'length', length: 1 },
      true,
    ],
    ['chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n', 'GET', { kind: 'chunked' }, true],
    ['no framing: until close', 'HTTP/1.1 200 OK\r\n\r\n', 'GET', { kind: 'close' }, false],
    ['Content-Length: 0', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'GET', { kind: 'none' }, true],
    [
      'a repeated identical length',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n',
      'GET',
      { kind: 'length', length: 3 },
      true,
    ],
    ['HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n', 'HEAD', { kind: 'none' }, true],
    ['HEAD, chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'HEAD', { kind: 'none' }, true],
    ['204', 'HTTP/1.1 204 No Content\r\n\r\n', 'GET', { kind: 'none' }, true],
    ['304', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n', 'GET', { kind: 'none' }, true],
    ['100', 'HTTP/1.1 100 Continue\r\n\r\n', 'POST', { kind: 'none' }, true],
    [
      '101: never reused',
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n',
      'GET',
      { kind: 'none' },
      false,
    ],
    [
      'Connection: close',
      'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n',
      'GET',
      { kind: 'length', length: 1 },
      false,
    ],
    ['HTTP/1.0', 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n', 'GET', { kind: 'length', length: 1 }, false],
    ['HTTP/1.0 until close', 'HTTP/1.0 200 OK\r\n\r\n', 'GET', { kind: 'close' }, false],
  ];
  it.each(framing)('%s', (_what, head, method, body, keepAlive) => {
    expect(answered(head, method)).toMatchObject({ body, keepAlive });
  });

  it('reads Keep-Alive: timeout=N as milliseconds', () => {
    expect(answered('HTTP/1.1 200 OK\r\nKeep-Alive: max=100, Timeout=5\r\nContent-Length: 0\r\n\r\n')).toMatchObject({
      keepAliveTimeoutMs: 5000,
    });
    expect(answered('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=x\r\nContent-Length: 0\r\n\r\n')).not.toHaveProperty(
      'keepAliveTimeoutMs',
    );
  });

  const refused: [what: string, head: string, reason: string][] = [
    ['HTTP/2.0', 'HTTP/2.0 200 OK\r\n\r\n', 'bad_status_line'],
    ['a two-digit status', 'HTTP/1.1 20 OK\r\n\r\n', 'bad_status_line'],
    ['a four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n', 'bad_status_line'],
    ['status 099', 'HTTP/1.1 099 X\r\n\r\n', 'bad_status_line'],
    ['status 600', 'HTTP/1.1 600 X\r\n\r\n', 'bad_status_line'],
    ['NUL in the reason', 'HTTP/1.1 200 O\0K\r\n\r\n', 'bad_status_line'],
    ['a bare LF after the status line', 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n', 'bad_status_line'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n', 'bad_header_field'],
    [
      'differing lengths',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n',
      'duplicate_content_length',
    ],
    ['a bad length', 'HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n', 'bad_content_length'],
    [
      'length and chunked',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
      'content_length_with_transfer_encoding',
    ],
    ['gzip', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', 'bad_transfer_encoding'],
    ['gzip, chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 'bad_transfer_encoding'],
    ['chunked on HTTP/1.0', 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'bad_transfer_encoding'],
  ];
  it.each(refused)('refuses %s with 400', (_what, head, reason) => {
    expect(response(head)).toEqual({ status: 400, reason });
  });

  it('a head over the limit is a 400 too (the engine answers 502)', () => {
    expect(response(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(100)}\r\n`, 'GET', 50)).toEqual({
      status: 400,
      reason: 'headers_too_large',
    });
  });
});

/** Feeds `wire` to a decoder in pieces cut at `cuts`; the data it passed on, and where it stopped. */
function decode(wire: Buffer, cuts: number[] = [], maxTrailerBytes = 1024) {
  const decoder = new ChunkedDecoder(maxTrailerBytes);
  const data: Buffer[] = [];
  let consumed = 0;
  const bounds = [...cuts, wire.length];
  let from = 0;
  for (const to of bounds) {
    const piece = wire.subarray(0, to);
    const n = decoder.push(piece, from, (d) => data.push(d));
    if (isHeadError(n)) return { error: n, data: Buffer.concat(data).toString('latin1') };
    consumed += n;
    if (decoder.done) break;
    expect(n).toBe(to - from);
    from = to;
  }
  return { done: decoder.done, consumed, data: Buffer.concat(data).toString('latin1') };
}

describe('ChunkedDecoder', () => {
  const body = bytes(
    '5\r\nhello\r\n1;name=value;flag;q="a \\"b\\" \xe9"\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n',
  );

  it('decodes a body with extensions and a trailer, in every two-piece split', () => {
    for (let cut = 0; cut <= body.length; cut++) {
      expect(decode(body, [cut]), `cut at ${cut}`).toEqual({
        done: true,
        consumed: body.length,
        data: 'hello 0123456789',
      });
    }
  });

  it('decodes a body fed one byte at a time', () => {
    const cuts = Array.from({ length: body.length - 1 }, (_, i) => i + 1);
    expect(decode(body, cuts)).toEqual({ done: true, consumed: body.length, data: 'hello 0123456789' });
  });

  it('passes data on as views of the pushed buffer, never copies', () => {
    const wire = bytes('4\r\nabcd\r\n0\r\n\r\n');
    const seen: Buffer[] = [];
    new ChunkedDecoder(0).push(wire, 0, (d) => seen.push(d));
    expect(seen).toHaveLength(1);
    expect(seen[0].buffer).toBe(wire.buffer);
    expect(seen[0].byteOffset).toBe(wire.byteOffset + 3);
  });

  it('stops at the end of the body: the rest is the next message', () => {
    const wire = bytes('3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n');
    const decoder = new ChunkedDecoder(0);
    const n = decoder.push(wire, 0, () => {});
    expect(n).toBe(13);
    expect(decoder.done).toBe(true);
    expect(decoder.push(wire, 13, () => {})).toBe(0);
  });

  it('starts reading at `start`', () => {
    const wire = bytes('xxxx2\r\nab\r\n0\r\n\r\n');
    const data: string[] = [];
    const decoder = new ChunkedDecoder(0);
    expect(decoder.push(wire, 4, (d) => data.push(d.toString()))).toBe(wire.length - 4);
    expect(data).toEqual(['ab']);
  });

  it('accepts upper- and lower-case hex and 16 digits of leading zeros', () => {
    expect(decode(bytes('a\r\n0123456789\r\nB\r\n0123456789a\r\n0\r\n\r\n')).data).toHaveLength(21);
    expect(decode(bytes('0000000000000003\r\nabc\r\n0\r\n\r\n')).data).toBe('abc');
  });

  it('round-trips what chunkHeader and LAST_CHUNK encode', () => {
    const parts = [Buffer.alloc(1, 0x61), Buffer.alloc(255, 0x62), Buffer.alloc(4096, 0x63)];
    const wire = Buffer.concat([...parts.flatMap((p) => [chunkHeader(p.length), p, bytes('\r\n')]), LAST_CHUNK]);
    expect(chunkHeader(255).toString()).toBe('ff\r\n');
    expect(LAST_CHUNK.toString()).toBe('0\r\n\r\n');
    expect(decode(wire)).toEqual({ done: true, consumed: wire.length, data: Buffer.concat(parts).toString('latin1') });
  });

  it('bounds the trailer section by maxTrailerBytes', () => {
    const wire = bytes(`0\r\nX: ${'a'.repeat(30)}\r\n\r\n`);
    expect(decode(wire, [], wire.length - 2).done).toBe(true);
    expect(decode(wire, [], 20).error).toEqual({ status: 400, reason: 'bad_chunked_encoding' });
  });

  it('bounds the chunk extensions of a message', () => {
    const line = `1;${'e'.repeat(1000)}\r\na\r\n`;
    expect(decode(bytes(`${line.repeat(15)}0\r\n\r\n`)).done).toBe(true);
    expect(decode(bytes(`${line.repeat(17)}0\r\n\r\n`)).error).toEqual({ status: 400, reason: 'bad_chunked_encoding' });
  });

  const bad: [what: string, wire: string][] = [
    ['no size', '\r\nabc\r\n0\r\n\r\n'],
    ['a signed size', '+3\r\nabc\r\n0\r\n\r\n'],
    ['17 hex digits', '00000000000000003\r\nabc\r\n0\r\n\r\n'],
    ['a size above 2^53', 'ffffffffffffffff\r\n'],
    ['a 0x prefix', '0x3\r\nabc\r\n0\r\n\r\n'],
    ['a space after the size', '3 \r\nabc\r\n0\r\n\r\n'],
    ['a space before an extension', '3 ;a\r\nabc\r\n0\r\n\r\n'],
    ['a space in an extension', '3; a=b\r\nabc\r\n0\r\n\r\n'],
    ['an empty extension', '3;\r\nabc\r\n0\r\n\r\n'],
    ['an empty extension value', '3;a=\r\nabc\r\n0\r\n\r\n'],
    ['an unterminated quoted value', '3;a="b\r\nabc\r\n0\r\n\r\n'],
    ['a non-token extension name', '3;a@b\r\nabc\r\n0\r\n\r\n'],
    ['a bare LF after the size', '3\nabc\r\n0\r\n\r\n'],
    ['a bare LF after data', '3\r\nabc\n0\r\n\r\n'],
    ['data longer than its size', '3\r\nabcd\r\n0\r\n\r\n'],
    ['a bare LF after the last chunk', '3\r\nabc\r\n0\n\r\n'],
    ['a bare LF ending the trailer section', '3\r\nabc\r\n0\r\n\n'],
    ['a trailer without a colon', '0\r\nX\r\n\r\n'],
    ['a trailer with a space before the colon', '0\r\nX : y\r\n\r\n'],
    ['a folded trailer', '0\r\nX: y\r\n z\r\n\r\n'],
    ['NUL in a trailer', '0\r\nX: \0\r\n\r\n'],
  ];
  it.each(bad)('refuses %s', (_what, wire) => {
    const result = decode(bytes(wire));
    expect(result.error).toEqual({ status: 400, reason: 'bad_chunked_encoding' });
  });

  it('stays failed once it has failed', () => {
    const decoder = new ChunkedDecoder(0);
    expect(decoder.push(bytes('x'), 0, () => {})).toEqual({ status: 400, reason: 'bad_chunked_encoding' });
    expect(decoder.push(bytes('3\r\nabc\r\n0\r\n\r\n'), 0, () => {})).toEqual({
      status: 400,
      reason: 'bad_chunked_encoding',
    });
    expect(decoder.done).toBe(false);
  });
});

describe('isHeadError', () => {
  it('tells an error from a head and from a count', () => {
    expect(isHeadError(request('GET / HTTP/1.1\r\n\r\n'))).toBe(true);
    expect(isHeadError(request('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe(false);
    expect(isHeadError(response('HTTP/1.1 200 OK\r\n\r\n'))).toBe(false);
    expect(isHeadError(3)).toBe(false);
    expect(isHeadError(undefined)).toBe(false);
  });
});
