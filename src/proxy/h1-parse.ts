// HTTP/1.1 message framing as we accept it (RFC 9112), read from the raw bytes of a connection: a caller's
// request head, the app's response head, and a chunked body. Request smuggling lives in the places where two
// parsers read one message differently, so anything that could be read two ways is an error before a byte
// reaches the app: every request head we accept, Node's own parser (llhttp) accepts and reads the same way
// (test/proxy/h1-parse-agrees-with-llhttp.test.ts); we refuse some that it takes.
//
// Heads are scanned once with charCode loops over lookup tables and decoded as latin1, as Node does; a
// head is parsed again from its start when more bytes arrive, which the head-size limit bounds.
import type { IncomingHttpHeaders } from 'node:http';
import { nodeHttp } from '../node-http.js';

/** How a message's body is framed (RFC 9112 §6). A `length` is never 0: an empty body is `none`. */
export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** Responses only: the body runs until the app closes the connection. */
  | { readonly kind: 'close' };

export interface HeadError {
  readonly status: 400 | 431 | 501 | 505;
  /** A bounded reason code (snake_case): see the `fail(...)` calls below. */
  readonly reason: string;
}

export interface RequestHead {
  /** As sent: one of the methods Node's parser knows, upper-case letters only. */
  readonly method: string;
  /** The request-target as sent: origin-form, absolute-form (http/https) or `*` (OPTIONS). */
  readonly url: string;
  readonly minor: 0 | 1;
  /** Flat [name, value, ...]: names as sent, values without leading/trailing SP/HTAB, latin1 (as Node). */
  readonly rawHeaders: string[];
  /** Node's `req.headers` for the same fields (a plain object, as Node's: a `__proto__` field is not in it). */
  readonly headers: IncomingHttpHeaders;
  /** Never `close` for a request. */
  readonly body: BodyFraming;
  /** HTTP/1.1 without a `close` token; HTTP/1.0 with a `keep-alive` token and no `close` token. */
  readonly keepAlive: boolean;
  /** A Connection token `upgrade` and a non-empty Upgrade field (Node's rule for its 'upgrade' event). */
  readonly upgrade: boolean;
  /** HTTP/1.1 with one `Expect: 100-continue` (any case). HTTP/1.0: never (RFC 9110 §10.1.1, and Node). */
  readonly expectContinue: boolean;
  /** HTTP/1.1 with any other Expect (we answer 417). */
  readonly expectOther: boolean;
  /** Bytes of the head, including any empty lines before it and the final CRLFCRLF. */
  readonly headBytes: number;
}

export interface ResponseHead {
  /** 100..599. */
  readonly status: number;
  readonly minor: 0 | 1;
  readonly rawHeaders: string[];
  /** For the request's method: HEAD, 1xx, 204, 304: none; then chunked; length; else close. */
  readonly body: BodyFraming;
  /** The app's connection may be reused: HTTP/1.1, no `close` token, not `close` framing, not a 101. */
  readonly keepAlive: boolean;
  /** From `Keep-Alive: timeout=N` (seconds on the wire), in ms. */
  readonly keepAliveTimeoutMs?: number;
  /**
   * The Content-Length the app declared (its repeats agreeing), as a number: also on a bodiless response, where
   * it describes the representation (HEAD, 304). The caller gets this number, written by us, not the app's text.
   */
  readonly contentLength?: number;
  /**
   * A response without a body (HEAD, 204, 304) whose framing fields announce one: an app that sends it anyway,
   * late, would have it read as the next response on that connection, so the connection is not reused.
   */
  readonly announcesBody?: true;
  /** Bytes of the head, including any empty lines before it and the final CRLFCRLF. */
  readonly headBytes: number;
}

/**
 * Buffer's own latin1 decoder: what `toString('latin1', a, b)` calls after checking its arguments, which
 * costs as much as the decoding for the short strings of a head. Not in @types/node; in Node since 0.x.
 */
interface Latin1Buffer extends Buffer {
  latin1Slice(start: number, end: number): string;
}
const latin1 = (buf: Buffer, start: number, end: number): string => (buf as Latin1Buffer).latin1Slice(start, end);

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/** RFC 9110 §5.6.2 tchar. */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TOKEN[c.charCodeAt(0)] = 1;
}
/** RFC 9110 §5.5 field-value bytes: HTAB, SP, VCHAR, obs-text. No NUL, CR, LF, DEL or other controls. */
const FIELD_VALUE = new Uint8Array(256);
FIELD_VALUE[HTAB] = 1;
for (let c = 0x20; c <= 0x7e; c++) FIELD_VALUE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) FIELD_VALUE[c] = 1;
/** RFC 3986 reg-name without percent-escapes: all an http(s) authority needs, and nothing llhttp reads otherwise. */
const HOST_NAME = new Uint8Array(256);
for (const c of '-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz') HOST_NAME[c.charCodeAt(0)] = 1;
const IP_LITERAL = new Uint8Array(256);
for (const c of ':.0123456789ABCDEFabcdef') IP_LITERAL[c.charCodeAt(0)] = 1;

/**
 * Node's parser answers 400 to any method it does not know, so these are all a request can carry here.
 * CONNECT is not proxied (its target is an authority, and Node gives it to a 'connect' handler).
 */
const KNOWN_METHODS = new Set(nodeHttp.METHODS.filter((m) => /^[A-Z]+$/.test(m) && m !== 'CONNECT'));
const MAX_METHOD_LENGTH = 20;
/** 15 digits stay below 2^53, so the length is exact. */
const MAX_CONTENT_LENGTH_DIGITS = 15;

/** Node keeps the first of these when a field repeats (IncomingMessage, `joinDuplicateHeaders` off). */
const FIRST_ONE_KEPT = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'host',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires',
]);

const NO_BODY: BodyFraming = Object.freeze({ kind: 'none' });
const CHUNKED: BodyFraming = Object.freeze({ kind: 'chunked' });
const UNTIL_CLOSE: BodyFraming = Object.freeze({ kind: 'close' });

function fail(status: HeadError['status'], reason: string): HeadError {
  return { status, reason };
}

export function isHeadError(x: unknown): x is HeadError {
  return typeof x === 'object' && x !== null && 'reason' in x && 'status' in x;
}

/** What the framing fields of a head said, gathered while its fields are scanned. */
interface FramingFields {
  contentLengths: string[] | undefined;
  codings: string[] | undefined;
  close: boolean;
  keepAlive: boolean;
  upgradeToken: boolean;
  upgradeField: boolean;
  hosts: number;
  expects: string[] | undefined;
  /** Responses: the Keep-Alive field. */
  keepAliveParams: string | undefined;
}

/**
 * Where the head that starts at `start` ends (the index of its CRLFCRLF), or why there is none yet.
 * `maxHeaderBytes` bounds the whole head, counted from the start of `buf`.
 */
function findHeadEnd(
  buf: Buffer,
  start: number,
  maxHeaderBytes: number,
  firstLineReason: string,
): number | HeadError | undefined {
  // Only the bytes that may still be head are searched: a large read of body bytes is not scanned twice.
  const window = buf.length > maxHeaderBytes ? buf.subarray(0, maxHeaderBytes) : buf;
  const end = window.indexOf(HEAD_END, start);
  if (end !== -1) return end;
  if (buf.length > maxHeaderBytes) return fail(431, 'headers_too_large');
  // A client that ends its lines in bare LF would otherwise wait for a CRLFCRLF that never comes.
  let reason = firstLineReason;
  for (let lf = buf.indexOf(LF, start); lf !== -1; lf = buf.indexOf(LF, lf + 1)) {
    if (lf === start || buf[lf - 1] !== CR) return fail(400, reason);
    reason = 'bad_header_field';
  }
  return undefined;
}

function skipEmptyLines(buf: Buffer): number {
  let i = 0;
  while (buf[i] === CR && buf[i + 1] === LF) i += 2;
  return i;
}

/**
 * Scans the field lines in buf[p..fieldsEnd) (fieldsEnd: the empty line's CR), pushing them to `rawHeaders`
 * (and to `headers`, if given), and gathers the framing fields. Whitespace in a framing field's value is SP
 * only: llhttp reads `close\t` as no `close` token and rejects `5\t` as a length, so a tab there is an error.
 */
function scanFields(
  buf: Buffer,
  p: number,
  fieldsEnd: number,
  maxHeaderCount: number,
  rawHeaders: string[],
  headers: Record<string, string | string[]> | undefined,
  framing: FramingFields,
): HeadError | undefined {
  let count = 0;
  while (p < fieldsEnd) {
    const lineStart = p;
    let i = p;
    let upper = false;
    for (let b = buf[i]; TOKEN[b] === 1; b = buf[++i]) if (b >= 0x41 && b <= 0x5a) upper = true;
    // Covers an empty name, obs-fold (a line starting with SP/HTAB), whitespace before the colon, bare LF.
    if (i === p || buf[i] !== 0x3a) return fail(400, 'bad_header_field');
    if (++count > maxHeaderCount) return fail(431, 'too_many_headers');
    const nameEnd = i;
    i++;
    while (buf[i] === SP || buf[i] === HTAB) i++;
    const valueStart = i;
    let valueEnd = i;
    let tab = false;
    for (let b = buf[i]; FIELD_VALUE[b] === 1; b = buf[++i]) {
      if (b === HTAB) tab = true;
      else if (b !== SP) valueEnd = i + 1;
    }
    if (buf[i] !== CR || buf[i + 1] !== LF) return fail(400, 'bad_header_field');
    p = i + 2;
    const name = latin1(buf, lineStart, nameEnd);
    const value = valueEnd === valueStart ? '' : latin1(buf, valueStart, valueEnd);
    rawHeaders.push(name, value);
    const lower = upper ? name.toLowerCase() : name;
    if (headers !== undefined) addNodeHeader(headers, lower, value);
    switch (lower) {
      case 'content-length':
        if (tab) return fail(400, 'bad_content_length');
        (framing.contentLengths ??= []).push(value);
        break;
      case 'transfer-encoding':
        if (tab) return fail(400, 'bad_transfer_encoding');
        for (const coding of value.split(',')) (framing.codings ??= []).push(coding.trim().toLowerCase());
        break;
      // llhttp reads Proxy-Connection as Connection: its tokens close a connection or make an upgrade there.
      case 'connection':
      case 'proxy-connection':
        if (tab) return fail(400, 'bad_connection');
        for (const token of value.split(',')) {
          const t = token.trim().toLowerCase();
          if (t === 'close') framing.close = true;
          else if (t === 'keep-alive') framing.keepAlive = true;
          else if (t === 'upgrade') framing.upgradeToken = true;
        }
        break;
      case 'upgrade':
        if (value !== '') framing.upgradeField = true;
        break;
      case 'host':
        framing.hosts++;
        break;
      case 'expect':
        (framing.expects ??= []).push(value);
        break;
      case 'keep-alive':
        framing.keepAliveParams = value;
        break;
    }
  }
  return undefined;
}

/**
 * Node's IncomingMessage rules for `req.headers`, on a plain object as Node's: a field named like an Object
 * member (`constructor`) becomes an own property, and `__proto__` is ignored (assigning a string to it is).
 */
function addNodeHeader(headers: Record<string, string | string[]>, lower: string, value: string): void {
  const existing: unknown = headers[lower];
  if (lower === 'set-cookie') {
    if (Array.isArray(existing)) existing.push(value);
    else headers[lower] = [value];
  } else if (typeof existing !== 'string') {
    headers[lower] = value;
  } else if (!FIRST_ONE_KEPT.has(lower)) {
    headers[lower] = `${existing}${lower === 'cookie' ? '; ' : ', '}${value}`;
  }
}

function newFraming(): FramingFields {
  return {
    contentLengths: undefined,
    codings: undefined,
    close: false,
    keepAlive: false,
    upgradeToken: false,
    upgradeField: false,
    hosts: 0,
    expects: undefined,
    keepAliveParams: undefined,
  };
}

/** A Content-Length value: 1 to 15 digits, nothing else (no sign, no list). */
function contentLength(value: string): number | undefined {
  if (value.length === 0 || value.length > MAX_CONTENT_LENGTH_DIGITS) return undefined;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return n;
}

/**
 * The transfer codings: exactly one `chunked`. Anything else would be forwarded de-chunked but still coded
 * (RFC 9112 §6.1: 501), or is a list llhttp and the app could read apart.
 */
function checkCodings(codings: readonly string[]): HeadError | undefined {
  if (codings.length === 1 && codings[0] === 'chunked') return undefined;
  return codings.every((c) => c === 'chunked')
    ? fail(400, 'bad_transfer_encoding')
    : fail(501, 'unsupported_transfer_coding');
}

/** `HTTP/1.0` or `HTTP/1.1` at buf[i..i+8): the minor version; any other `HTTP/d.d`: 505; else -1. */
function httpVersion(buf: Buffer, i: number): 0 | 1 | 505 | -1 {
  if (buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 || buf[i + 3] !== 0x50 || buf[i + 4] !== 0x2f) {
    return -1;
  }
  const major = buf[i + 5] - 0x30;
  const minor = buf[i + 7] - 0x30;
  if (!(major >= 0 && major <= 9) || buf[i + 6] !== 0x2e || !(minor >= 0 && minor <= 9)) return -1;
  if (major === 1 && (minor === 0 || minor === 1)) return minor;
  return 505;
}

/**
 * The request-target's form (RFC 9112 §3.2), its bytes already known to be visible ASCII. An absolute-form
 * authority is a host name or IP literal and an optional port, nothing else (no userinfo, no escapes); no
 * fragment anywhere in it (llhttp rejects some).
 */
function validTarget(buf: Buffer, start: number, end: number, method: string): boolean {
  const first = buf[start];
  if (first === 0x2f) return true;
  if (first === 0x2a) return end === start + 1 && method === 'OPTIONS';
  let i: number;
  if (latin1(buf, start, Math.min(end, start + 7)) === 'http://') i = start + 7;
  else if (latin1(buf, start, Math.min(end, start + 8)) === 'https://') i = start + 8;
  else return false;
  const hostStart = i;
  if (buf[i] === 0x5b) {
    i++;
    while (i < end && IP_LITERAL[buf[i]] === 1) i++;
    if (buf[i] !== 0x5d || i === hostStart + 1) return false;
    i++;
  } else {
    while (i < end && HOST_NAME[buf[i]] === 1) i++;
    if (i === hostStart) return false;
  }
  if (i < end && buf[i] === 0x3a) {
    const portStart = ++i;
    while (i < end && buf[i] >= 0x30 && buf[i] <= 0x39) i++;
    if (i === portStart || i - portStart > 5) return false;
  }
  if (i < end && buf[i] !== 0x2f && buf[i] !== 0x3f) return false;
  for (; i < end; i++) if (buf[i] === 0x23) return false;
  return true;
}

/**
 * Parses one request head at the start of `buf`. undefined: incomplete (need more bytes), unless `buf`
 * already holds more than `maxHeaderBytes` without a complete head (431 headers_too_large). Fields past
 * `maxHeaderCount`: 431 too_many_headers.
 */
export function parseRequestHead(
  buf: Buffer,
  maxHeaderBytes: number,
  maxHeaderCount: number,
): RequestHead | HeadError | undefined {
  // RFC 9112 §2.2: empty lines before a request line may be ignored; llhttp does.
  const start = skipEmptyLines(buf);
  const end = findHeadEnd(buf, start, maxHeaderBytes, 'bad_request_line');
  if (typeof end !== 'number') return end;

  // method SP request-target SP HTTP-version CRLF, exactly one SP between them.
  let i = start;
  let upper = true;
  for (let b = buf[i]; TOKEN[b] === 1; b = buf[++i]) if (b < 0x41 || b > 0x5a) upper = false;
  if (i === start || buf[i] !== SP) return fail(400, 'bad_request_line');
  // Our HTTP/2 path serves [A-Z]{1,20} methods: the same here.
  if (!upper || i - start > MAX_METHOD_LENGTH) return fail(400, 'bad_method');
  const method = latin1(buf, start, i);
  if (!KNOWN_METHODS.has(method)) return fail(501, 'unsupported_method');
  const targetStart = ++i;
  for (let b = buf[i]; b >= 0x21 && b <= 0x7e; b = buf[++i]);
  if (buf[i] !== SP || i === targetStart) {
    return fail(400, i === targetStart || buf[i] === CR || buf[i] === LF ? 'bad_request_line' : 'bad_request_target');
  }
  const targetEnd = i;
  const minor = httpVersion(buf, i + 1);
  if (minor === -1 || buf[i + 9] !== CR || buf[i + 10] !== LF) {
    return fail(400, 'bad_request_line');
  }
  if (minor === 505) return fail(505, 'http_version_not_supported');
  if (!validTarget(buf, targetStart, targetEnd, method)) return fail(400, 'bad_request_target');
  const url = latin1(buf, targetStart, targetEnd);

  const rawHeaders: string[] = [];
  const headers: Record<string, string | string[]> = {};
  const framing = newFraming();
  const fieldError = scanFields(buf, i + 11, end + 2, maxHeaderCount, rawHeaders, headers, framing);
  if (fieldError) return fieldError;

  let body = NO_BODY;
  const lengths = framing.contentLengths;
  if (lengths !== undefined && lengths.length > 1) return fail(400, 'duplicate_content_length');
  if (framing.codings !== undefined) {
    if (lengths !== undefined) return fail(400, 'content_length_with_transfer_encoding');
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if (minor === 0) return fail(400, 'bad_transfer_encoding');
    const codingError = checkCodings(framing.codings);
    if (codingError) return codingError;
    body = CHUNKED;
  } else if (lengths !== undefined) {
    const length = contentLength(lengths[0]);
    if (length === undefined) return fail(400, 'bad_content_length');
    if (length > 0) body = { kind: 'length', length };
  }
  // RFC 9112 §3.2: one Host, and HTTP/1.1 must send it (Node's requireHostHeader says the same).
  if (framing.hosts > 1) return fail(400, 'duplicate_host');
  if (framing.hosts === 0 && minor === 1) return fail(400, 'missing_host');

  const expects = minor === 1 ? framing.expects : undefined;
  const expectContinue = expects !== undefined && expects.length === 1 && expects[0].toLowerCase() === '100-continue';
  return {
    method,
    url,
    minor,
    rawHeaders,
    headers: headers as IncomingHttpHeaders,
    body,
    keepAlive: !framing.close && (minor === 1 || framing.keepAlive),
    upgrade: framing.upgradeToken && framing.upgradeField,
    expectContinue,
    expectOther: expects !== undefined && !expectContinue,
    headBytes: end + 4,
  };
}

/**
 * The app's response head at the start of `buf`, answering a request with `requestMethod`. The reason phrase
 * is ignored (any bytes but NUL, CR and LF). Every error has status 400 (the engine answers 502). A
 * Content-Length repeated with the same value is accepted (RFC 9112 §6.3), a differing one is not;
 * Transfer-Encoding must be exactly `chunked`, on HTTP/1.1, without Content-Length.
 */
export function parseResponseHead(
  buf: Buffer,
  maxHeaderBytes: number,
  requestMethod: string,
): ResponseHead | HeadError | undefined {
  const start = skipEmptyLines(buf);
  const end = findHeadEnd(buf, start, maxHeaderBytes, 'bad_status_line');
  if (end === undefined) return undefined;
  if (typeof end !== 'number') return fail(400, end.reason);

  const minor = httpVersion(buf, start);
  let i = start + 8;
  if (minor !== 0 && minor !== 1) return fail(400, 'bad_status_line');
  const d0 = buf[i + 1] - 0x30;
  const d1 = buf[i + 2] - 0x30;
  const d2 = buf[i + 3] - 0x30;
  if (buf[i] !== SP || !(d0 >= 1 && d0 <= 5) || !(d1 >= 0 && d1 <= 9) || !(d2 >= 0 && d2 <= 9)) {
    return fail(400, 'bad_status_line');
  }
  const status = d0 * 100 + d1 * 10 + d2;
  i += 4;
  if (buf[i] === SP) {
    i++;
    for (let b = buf[i]; b !== CR && b !== LF && b !== 0; b = buf[++i]);
  }
  if (buf[i] !== CR || buf[i + 1] !== LF) return fail(400, 'bad_status_line');

  const rawHeaders: string[] = [];
  const framing = newFraming();
  const fieldError = scanFields(buf, i + 2, end + 2, Infinity, rawHeaders, undefined, framing);
  if (fieldError) return fail(400, fieldError.reason);

  let body = UNTIL_CLOSE;
  let declared: number | undefined;
  const lengths = framing.contentLengths;
  const bodiless = requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304;
  if (framing.codings !== undefined) {
    if (lengths !== undefined) return fail(400, 'content_length_with_transfer_encoding');
    if (minor === 0) return fail(400, 'bad_transfer_encoding');
    if (checkCodings(framing.codings)) return fail(400, 'bad_transfer_encoding');
    body = CHUNKED;
  } else if (lengths !== undefined) {
    const length = contentLength(lengths[0]);
    if (length === undefined) return fail(400, 'bad_content_length');
    for (let k = 1; k < lengths.length; k++)
      if (lengths[k] !== lengths[0]) return fail(400, 'duplicate_content_length');
    body = length > 0 ? { kind: 'length', length } : NO_BODY;
    declared = length;
  }
  // Framing fields are still checked above on a bodiless response: they say the app is confused.
  if (bodiless) body = NO_BODY;
  const head: { -readonly [K in keyof ResponseHead]: ResponseHead[K] } = {
    status,
    minor,
    rawHeaders,
    body,
    keepAlive: minor === 1 && !framing.close && body.kind !== 'close' && status !== 101,
    headBytes: end + 4,
  };
  const timeout = framing.keepAliveParams === undefined ? undefined : keepAliveTimeoutSeconds(framing.keepAliveParams);
  if (timeout !== undefined) head.keepAliveTimeoutMs = timeout * 1000;
  if (declared !== undefined) head.contentLength = declared;
  if (bodiless && ((declared ?? 0) > 0 || framing.codings !== undefined)) head.announcesBody = true;
  return head;
}

/** `timeout=N` in a Keep-Alive field (`timeout=5, max=100`), in seconds. */
function keepAliveTimeoutSeconds(params: string): number | undefined {
  for (const param of params.split(',')) {
    const [name, value] = param.split('=', 2);
    if (name.trim().toLowerCase() !== 'timeout' || value === undefined) continue;
    const seconds = contentLength(value.trim());
    if (seconds !== undefined) return seconds;
  }
  return undefined;
}

// ChunkedDecoder states.
const SIZE = 0;
const SIZE_MORE = 1;
const EXT_NAME_START = 2;
const EXT_NAME = 3;
const EXT_VALUE_START = 4;
const EXT_TOKEN_VALUE = 5;
const EXT_QUOTED = 6;
const EXT_QUOTED_ESCAPE = 7;
const EXT_QUOTED_END = 8;
const SIZE_LF = 9;
const DATA = 10;
const DATA_CR = 11;
const DATA_LF = 12;
const TRAILER_LINE = 13;
const TRAILER_NAME = 14;
const TRAILER_VALUE = 15;
const TRAILER_LF = 16;
const LAST_LF = 17;
const DONE = 18;
const FAILED = 19;

const MAX_CHUNK_SIZE_DIGITS = 16;
/** Node's own bound on the chunk extensions of one message (CVE-2024-22019). */
const MAX_EXTENSION_BYTES = 16 * 1024;
const BAD_CHUNKED: HeadError = Object.freeze({ status: 400, reason: 'bad_chunked_encoding' });

/** quoted-string's qdtext (RFC 9110 §5.6.4): HTAB, SP, VCHAR but `"` and `\`, obs-text. */
const QDTEXT = new Uint8Array(FIELD_VALUE);
QDTEXT[0x22] = 0;
QDTEXT[0x5c] = 0;

function hexDigit(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  const l = b | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x57 : -1;
}

/**
 * A chunked body's framing (RFC 9112 §7.1), fed as bytes arrive, in any pieces. Data is passed on as
 * subarrays of the pushed buffers (no copies); chunk extensions and trailer fields are checked and dropped.
 * Chunk extensions: `*( ";" token [ "=" ( token / quoted-string ) ] )`, with no whitespace (llhttp rejects
 * whitespace around them), at most 16 KiB of them in a message. chunk-size: 1 to 16 hex digits, at most
 * 2^53 - 1. Trailer fields: the header-field grammar, at most `maxTrailerBytes` of field lines (CRLFs included).
 */
export class ChunkedDecoder {
  #state = SIZE;
  #digits = 0;
  #remaining = 0;
  #extensionBytes = 0;
  #trailerBytes = 0;
  readonly #maxTrailerBytes: number;

  constructor(maxTrailerBytes: number) {
    this.#maxTrailerBytes = maxTrailerBytes;
  }

  /** The last chunk and the trailer section have arrived: what follows is the next message's. */
  get done(): boolean {
    return this.#state === DONE;
  }

  /**
   * Consumes from buf[start..], calling `onData` with each data slice. Returns the bytes consumed: all of
   * them, unless the body ended within them (`done`). A framing error: 400 bad_chunked_encoding, and
   * every later push returns it too.
   */
  push(buf: Buffer, start: number, onData: (data: Buffer) => void): number | HeadError {
    if (this.#state === FAILED) return BAD_CHUNKED;
    let i = start;
    const len = buf.length;
    let state = this.#state;
    while (i < len && state !== DONE) {
      if (state === DATA) {
        const n = Math.min(this.#remaining, len - i);
        onData(buf.subarray(i, i + n));
        i += n;
        this.#remaining -= n;
        if (this.#remaining === 0) state = DATA_CR;
        continue;
      }
      const b = buf[i];
      switch (state) {
        case SIZE:
        case SIZE_MORE: {
          const d = hexDigit(b);
          if (d !== -1) {
            if (++this.#digits > MAX_CHUNK_SIZE_DIGITS) return this.#fail();
            this.#remaining = this.#remaining * 16 + d;
            if (this.#remaining > Number.MAX_SAFE_INTEGER) return this.#fail();
            state = SIZE_MORE;
          } else if (state === SIZE) {
            return this.#fail();
          } else if (b === CR) {
            state = SIZE_LF;
          } else if (b === 0x3b) {
            state = EXT_NAME_START;
          } else {
            return this.#fail();
          }
          break;
        }
        case EXT_NAME_START:
          if (TOKEN[b] !== 1) return this.#fail();
          state = EXT_NAME;
          break;
        case EXT_NAME:
        case EXT_TOKEN_VALUE:
        case EXT_QUOTED_END:
          if (state !== EXT_QUOTED_END && TOKEN[b] === 1) break;
          if (b === 0x3b) state = EXT_NAME_START;
          else if (b === CR) state = SIZE_LF;
          else if (b === 0x3d && state === EXT_NAME) state = EXT_VALUE_START;
          else return this.#fail();
          break;
        case EXT_VALUE_START:
          if (TOKEN[b] === 1) state = EXT_TOKEN_VALUE;
          else if (b === 0x22) state = EXT_QUOTED;
          else return this.#fail();
          break;
        case EXT_QUOTED:
          if (b === 0x22) state = EXT_QUOTED_END;
          else if (b === 0x5c) state = EXT_QUOTED_ESCAPE;
          else if (QDTEXT[b] !== 1) return this.#fail();
          break;
        case EXT_QUOTED_ESCAPE:
          if (FIELD_VALUE[b] !== 1) return this.#fail();
          state = EXT_QUOTED;
          break;
        case SIZE_LF:
          if (b !== LF) return this.#fail();
          this.#digits = 0;
          state = this.#remaining === 0 ? TRAILER_LINE : DATA;
          break;
        case DATA_CR:
          if (b !== CR) return this.#fail();
          state = DATA_LF;
          break;
        case DATA_LF:
          if (b !== LF) return this.#fail();
          state = SIZE;
          break;
        case TRAILER_LINE:
          // No obs-fold: a trailer line starts with a name or is the empty line.
          if (b === CR) state = LAST_LF;
          else if (TOKEN[b] === 1) state = TRAILER_NAME;
          else return this.#fail();
          break;
        case TRAILER_NAME:
          if (b === 0x3a) state = TRAILER_VALUE;
          else if (TOKEN[b] !== 1) return this.#fail();
          break;
        case TRAILER_VALUE:
          if (b === CR) state = TRAILER_LF;
          else if (FIELD_VALUE[b] !== 1) return this.#fail();
          break;
        case TRAILER_LF:
          if (b !== LF) return this.#fail();
          if (++this.#trailerBytes > this.#maxTrailerBytes) return this.#fail();
          state = TRAILER_LINE;
          break;
        case LAST_LF:
          if (b !== LF) return this.#fail();
          state = DONE;
          break;
        default:
          return BAD_CHUNKED;
      }
      if (state >= EXT_NAME_START && state <= EXT_QUOTED_END) {
        if (++this.#extensionBytes > MAX_EXTENSION_BYTES) return this.#fail();
      } else if (state >= TRAILER_NAME && state <= TRAILER_LF) {
        if (++this.#trailerBytes > this.#maxTrailerBytes) return this.#fail();
      }
      i++;
    }
    this.#state = state;
    return i - start;
  }

  #fail(): HeadError {
    this.#state = FAILED;
    return BAD_CHUNKED;
  }
}

/**
 * The framing line of one chunk, for re-encoding a decoded body: `${size.toString(16)}\r\n` as a Buffer
 * (the caller writes the data, then `\r\n`). `size` must be positive: a zero-size chunk is LAST_CHUNK.
 */
export function chunkHeader(size: number): Buffer {
  return Buffer.from(`${size.toString(16)}\r\n`, 'latin1');
}

/** The last chunk and an empty trailer section. */
export const LAST_CHUNK: Buffer = Buffer.from('0\r\n\r\n', 'latin1');
