// Every answer the sidecar writes itself, never the app's: a status, a stable reason code and the JSON body
// `{"error","reason"}`, written the same way on an HTTP/1.1 response, an HTTP/2 stream or a raw socket (an
// upgrade request). One catalogue, so that the wording cannot drift between the ways of forwarding.
import type * as http from 'node:http';
import { nodeHttp } from '../node-http.js';
import type * as http2 from 'node:http2';
import { H2_NO_ERROR } from './h2-error-codes.js';
import { endLingering } from './lingering-close.js';
import type { Socket } from 'node:net';
import type { Decision } from '../authz/policy.js';

/** The `error` word of each status we write. */
const ERROR_OF_STATUS: Readonly<Record<number, string>> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  408: 'request_timeout',
  417: 'expectation_failed',
  429: 'too_many_requests',
  431: 'headers_too_large',
  500: 'internal_error',
  501: 'not_implemented',
  502: 'bad_gateway',
  503: 'unavailable',
  504: 'gateway_timeout',
  505: 'http_version_not_supported',
};

export interface Answer {
  readonly status: number;
  /** A bounded code: a denial reason, an `ERR_…` code, or one of the reasons in the README's Responses. */
  readonly reason: string;
  /** Extra response fields, e.g. `www-authenticate`, `retry-after`. */
  readonly headers?: Readonly<Record<string, string>>;
}

export function answer(status: number, reason: string, headers?: Readonly<Record<string, string>>): Answer {
  return headers ? { status, reason, headers } : { status, reason };
}

export function answerBody(a: Answer): string {
  return JSON.stringify({ error: ERROR_OF_STATUS[a.status] ?? 'error', reason: a.reason });
}

/**
 * A denial of the rules: 429 (with Retry-After) when rate limited, 503 (with Retry-After) when the shared
 * rate-limit store could not count it, 400 for a path without a normal form.
 */
export function denialAnswer(decision: Decision & { allow: false }): Answer {
  if (decision.reason === 'rate_limited')
    return answer(429, decision.reason, { 'retry-after': String(decision.retryAfterSeconds ?? 1) });
  // The shared store could not count the request and --rate-limit-store-failure deny says refuse.
  if (decision.reason === 'rate_limit_unavailable')
    return answer(503, decision.reason, { 'retry-after': String(decision.retryAfterSeconds ?? 1) });
  if (decision.reason === 'path_not_normalized') return answer(400, decision.reason);
  return answer(403, decision.reason);
}

/**
 * On an HTTP/1.1 response. The connection closes once it is written (RFC 9112 §9.6), unless `keepAlive`:
 * the rest of a refused body is never waited for, so a caller cannot hold the connection by trickling one.
 * Returns the body bytes written (the access line's `bytes_out`): none to a HEAD, or if already answered.
 */
export function writeAnswerH1(res: http.ServerResponse, a: Answer, keepAlive = false): number {
  if (res.headersSent) return 0;
  res.writeHead(a.status, {
    'content-type': 'application/json',
    ...a.headers,
    ...(keepAlive ? {} : { connection: 'close' }),
  });
  const body = answerBody(a);
  res.end(body);
  return res.req?.method === 'HEAD' ? 0 : Buffer.byteLength(body);
}

/**
 * On an HTTP/2 stream. A request whose body is still coming is reset with NO_ERROR once the answer is out
 * (RFC 9113 §8.1): its body is not waited for. Only after 'finish': close() on a stream still ending, in a
 * session being torn down, made Node grow the session's outgoing buffer without bound (gigabytes in
 * seconds; test/e2e/http2-callers-that-leave-mid-request-cannot-exhaust-memory).
 */
export function writeAnswerH2(stream: http2.ServerHttp2Stream, a: Answer): number {
  if (stream.destroyed || stream.closed || stream.headersSent) return 0;
  stream.respond({ ':status': a.status, 'content-type': 'application/json', ...a.headers });
  // A HEAD request: respond() has ended the stream already (a body written after it would be an error).
  const body = stream.writableEnded ? '' : answerBody(a);
  if (body) stream.end(body);
  stream.once('finish', () => {
    if (stream.destroyed || stream.closed || stream.readableEnded || stream.session?.destroyed) return;
    stream.close(H2_NO_ERROR);
  });
  return Buffer.byteLength(body);
}

/**
 * An answer as the bytes of an HTTP/1.1 response, for the paths that write to the socket themselves (the raw
 * HTTP/1.1 path, an upgrade request). `close`: the connection closes after it; `head`: the request was HEAD
 * (the length is announced, no body is sent). `bodyBytes`: what the access line counts.
 */
export function answerMessage(
  a: Answer,
  close: boolean,
  head = false,
  http10 = false,
): { text: string; bodyBytes: number } {
  const body = answerBody(a);
  let fields = '';
  if (a.headers) for (const name in a.headers) fields += `${name}: ${a.headers[name]}\r\n`;
  const length = Buffer.byteLength(body);
  // An HTTP/1.0 caller's connection stays open only if the answer says so (as relayed responses do).
  const connection = close ? 'connection: close\r\n' : http10 ? 'connection: keep-alive\r\n' : '';
  const text = `HTTP/1.1 ${a.status} ${nodeHttp.STATUS_CODES[a.status]}\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n${fields}${connection}\r\n${head ? '' : body}`;
  return { text, bodyBytes: head ? 0 : length };
}

/**
 * On a socket the HTTP server has handed over (an upgrade request): the whole response, then a lingering close
 * (frames sent before our answer must not turn into a reset that destroys it), bounded, so that a half-open
 * socket does not hold a connection (and --max-connections) for ever.
 */
export function writeAnswerRaw(socket: Socket, a: Answer): number {
  if (socket.destroyed) return 0;
  const { text, bodyBytes } = answerMessage(a, true);
  endLingering(socket, text);
  return bodyBytes;
}
