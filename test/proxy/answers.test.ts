// The answer catalogue: answer()/answerBody()/denialAnswer() as tables, and each writer (HTTP/1.1
// response, HTTP/2 stream, raw socket) as a real client on loopback receives it.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Decision } from '../../src/authz/policy.js';
import {
  type Answer,
  answer,
  answerBody,
  denialAnswer,
  writeAnswerH1,
  writeAnswerH2,
  writeAnswerRaw,
} from '../../src/proxy/answers.js';
import { closeServer, h1Request, listenOn, readToClose } from '../helpers/proxy-unit.js';

describe('answer and answerBody', () => {
  const words: [number, string][] = [
    [400, 'bad_request'],
    [401, 'unauthorized'],
    [403, 'forbidden'],
    [408, 'request_timeout'],
    [429, 'too_many_requests'],
    [431, 'headers_too_large'],
    [501, 'not_implemented'],
    [502, 'bad_gateway'],
    [503, 'unavailable'],
    [504, 'gateway_timeout'],
    [418, 'error'],
  ];
  it.each(words)('status %i is written with error "%s"', (status, error) => {
    expect(JSON.parse(answerBody(answer(status, 'some_reason')))).toEqual({ error, reason: 'some_reason' });
  });

  it('keeps extra fields only when given', () => {
    expect(answer(401, 'ERR_JWT_MISSING')).toEqual({ status: 401, reason: 'ERR_JWT_MISSING' });
    expect(answer(401, 'x', { 'www-authenticate': 'Bearer' })).toEqual({
      status: 401,
      reason: 'x',
      headers: { 'www-authenticate': 'Bearer' },
    });
  });
});

describe('denialAnswer', () => {
  const cases: [what: string, decision: Decision & { allow: false }, expected: Answer][] = [
    [
      'rate limited, with its wait',
      { allow: false, reason: 'rate_limited', rule: 'r', retryAfterSeconds: 7 },
      { status: 429, reason: 'rate_limited', headers: { 'retry-after': '7' } },
    ],
    [
      'rate limited, no wait given',
      { allow: false, reason: 'rate_limited' },
      { status: 429, reason: 'rate_limited', headers: { 'retry-after': '1' } },
    ],
    [
      'the shared rate-limit store cannot count (--rate-limit-store-failure deny)',
      { allow: false, reason: 'rate_limit_unavailable', rule: 'r', retryAfterSeconds: 1 },
      { status: 503, reason: 'rate_limit_unavailable', headers: { 'retry-after': '1' } },
    ],
    [
      'a path without a normal form',
      { allow: false, reason: 'path_not_normalized' },
      { status: 400, reason: 'path_not_normalized' },
    ],
    ['no matching rule', { allow: false, reason: 'no_matching_rule' }, { status: 403, reason: 'no_matching_rule' }],
    ['a deny rule', { allow: false, reason: 'rule_denied', rule: 'd' }, { status: 403, reason: 'rule_denied' }],
    ['claims that fail', { allow: false, reason: 'claim_mismatch' }, { status: 403, reason: 'claim_mismatch' }],
    ["a key's route", { allow: false, reason: 'key_route_denied' }, { status: 403, reason: 'key_route_denied' }],
  ];
  it.each(cases)('%s', (_what, decision, expected) => {
    expect(denialAnswer(decision)).toEqual(expected);
  });
});

describe('writeAnswerH1', () => {
  let server: http.Server | undefined;
  afterEach(() => closeServer(server));

  async function serve(handler: (res: http.ServerResponse) => void): Promise<number> {
    server = http.createServer((req, res) => {
      req.resume();
      handler(res);
    });
    return listenOn(server);
  }

  it('writes status, content type, extra fields and the JSON body, and closes the connection', async () => {
    const port = await serve((res) => writeAnswerH1(res, answer(429, 'rate_limited', { 'retry-after': '3' })));
    const got = await h1Request(port);
    expect(got.status).toBe(429);
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['retry-after']).toBe('3');
    expect(got.headers.connection).toBe('close');
    expect(JSON.parse(got.body.toString())).toEqual({ error: 'too_many_requests', reason: 'rate_limited' });
  });

  it('with keepAlive, leaves the connection open for the next request', async () => {
    let connections = 0;
    const port = await serve((res) => writeAnswerH1(res, answer(403, 'no_matching_rule'), true));
    server!.on('connection', () => connections++);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await h1Request(port, { agent });
      const second = await h1Request(port, { agent });
      expect(first.headers.connection).toBe('keep-alive');
      expect([first.status, second.status]).toEqual([403, 403]);
      expect(connections).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('writes nothing over a response whose headers were sent', async () => {
    const port = await serve((res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('app bytes');
      writeAnswerH1(res, answer(502, 'upstream_unreachable'));
      res.end(' and the end');
    });
    const got = await h1Request(port);
    expect(got.status).toBe(200);
    expect(got.body.toString()).toBe('app bytes and the end');
  });
});

describe('writeAnswerH2', () => {
  let server: http2.Http2Server | undefined;
  let client: http2.ClientHttp2Session | undefined;
  afterEach(async () => {
    client?.destroy();
    await closeServer(server);
  });

  async function h2(handler: (stream: http2.ServerHttp2Stream) => void) {
    server = http2.createServer();
    server.on('stream', handler);
    const port = await listenOn(server);
    client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {});
    return client;
  }

  function collect(stream: http2.ClientHttp2Stream) {
    return new Promise<{ headers: http2.IncomingHttpHeaders; body: string; rstCode: number }>((resolve) => {
      let headers: http2.IncomingHttpHeaders = {};
      let body = '';
      stream.on('response', (h) => (headers = h));
      stream.on('data', (c: Buffer) => (body += c.toString()));
      stream.on('error', () => {});
      stream.on('close', () => resolve({ headers, body, rstCode: stream.rstCode ?? -1 }));
    });
  }

  it('answers a request without a body: status, fields, JSON body, a clean end', async () => {
    const session = await h2((stream) =>
      writeAnswerH2(stream, answer(401, 'ERR_JWT_MISSING', { 'www-authenticate': 'Bearer' })),
    );
    const got = await collect(session.request({ ':path': '/' }, { endStream: true }));
    expect(got.headers[':status']).toBe(401);
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['www-authenticate']).toBe('Bearer');
    expect(JSON.parse(got.body)).toEqual({ error: 'unauthorized', reason: 'ERR_JWT_MISSING' });
    expect(got.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  it('resets a request whose body is still coming with NO_ERROR once the answer is out', async () => {
    const session = await h2((stream) => writeAnswerH2(stream, answer(403, 'no_matching_rule')));
    const stream = session.request({ ':path': '/', ':method': 'POST' });
    stream.write('part of a body that never ends');
    const got = await collect(stream);
    expect(got.headers[':status']).toBe(403);
    expect(JSON.parse(got.body)).toEqual({ error: 'forbidden', reason: 'no_matching_rule' });
    // The client never ended its body: only our reset can have closed the stream.
    expect(got.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  });

  it('writes nothing on a stream already answered', async () => {
    const session = await h2((stream) => {
      stream.respond({ ':status': 200 });
      writeAnswerH2(stream, answer(502, 'upstream_unreachable'));
      stream.end('app');
    });
    const got = await collect(session.request({ ':path': '/' }, { endStream: true }));
    expect(got.headers[':status']).toBe(200);
    expect(got.body).toBe('app');
  });
});

describe('writeAnswerRaw', () => {
  let server: net.Server | undefined;
  afterEach(() => closeServer(server));

  async function raw(handler: (socket: net.Socket) => void): Promise<string> {
    server = net.createServer(handler);
    const port = await listenOn(server);
    const socket = net.connect(port, '127.0.0.1');
    return (await readToClose(socket)).toString('latin1');
  }

  it('writes a whole HTTP/1.1 response, with content-length, then closes', async () => {
    const text = await raw((socket) =>
      writeAnswerRaw(socket, answer(401, 'ERR_API_KEY_MISSING', { 'www-authenticate': 'Bearer' })),
    );
    const [head, body] = text.split('\r\n\r\n');
    const lines = head.split('\r\n');
    expect(lines[0]).toBe('HTTP/1.1 401 Unauthorized');
    expect(lines.slice(1)).toEqual([
      'content-type: application/json',
      `content-length: ${Buffer.byteLength(body)}`,
      'www-authenticate: Bearer',
      'connection: close',
    ]);
    expect(JSON.parse(body)).toEqual({ error: 'unauthorized', reason: 'ERR_API_KEY_MISSING' });
  });

  it('is read by a real HTTP client as the answer', async () => {
    server = net.createServer((socket) => {
      socket.once('data', () => writeAnswerRaw(socket, answer(400, 'unsupported_upgrade')));
    });
    const port = await listenOn(server);
    const got = await h1Request(port, { headers: { connection: 'upgrade', upgrade: 'h2c' } });
    expect(got.status).toBe(400);
    expect(JSON.parse(got.body.toString())).toEqual({ error: 'bad_request', reason: 'unsupported_upgrade' });
  });

  it('does nothing on a destroyed socket', async () => {
    let threw: unknown;
    const text = await raw((socket) => {
      socket.destroy();
      try {
        writeAnswerRaw(socket, answer(502, 'upstream_unreachable'));
      } catch (err) {
        threw = err;
      }
    });
    expect(threw).toBeUndefined();
    expect(text).toBe('');
  });
});

it('an h1 server emits close for its connection after a non-keep-alive answer', async () => {
  const server = http.createServer((req, res) => writeAnswerH1(res, answer(400, 'duplicate_host')));
  try {
    const port = await listenOn(server);
    const socket = net.connect(port, '127.0.0.1');
    socket.write('GET / HTTP/1.1\r\nhost: a\r\n\r\n');
    const text = (await readToClose(socket)).toString();
    expect(text.startsWith('HTTP/1.1 400 Bad Request\r\n')).toBe(true);
    expect(text).toContain('"reason":"duplicate_host"');
  } finally {
    await closeServer(server);
  }
});
