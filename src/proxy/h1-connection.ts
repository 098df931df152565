// One HTTP/1.1 caller connection on the raw path: the TLS (or TCP) socket read directly, request heads parsed
// strictly (h1-parse.ts: anything ambiguous is answered 400 before a byte reaches the app), each request run
// through the same pipeline as every other: admission → the app → the response back, with the identity
// headers first. No node:http object is made per request: a request costs its parse, its admission, two
// writes each way and its access line (issue 17: node:http's per-request machinery was 4-5× nginx's CPU).
//
// The app connection is bound to the caller connection (app-connections.ts). The request body is relayed as it
// arrives, re-framed when chunked (extensions and trailers never reach the app); the app's response is relayed
// with only its framing parsed: Content-Length and chunked bodies as they come, a close-delimited body
// re-chunked, HEAD/1xx/204/304 without one, an HTTP/1.0 caller given a close-delimited body. Requests are
// served one at a time; pipelined bytes wait (bounded) until the response before them is over.
import { nodeHttp } from '../node-http.js';
import type { Socket } from 'node:net';
import type { Admission, RequestHead as AdmittedHead } from './admission.js';
import { logRequestRefused } from './admission.js';
import type { AccessLog } from './access-log.js';
import { Exchange } from './access-log.js';
import { type Answer, answer, answerMessage } from './answers.js';
import type { AppConnections } from './app-connections.js';
import { type ForwardContext, type ForwardTarget, isGrpc, logStall, upstreamFailed } from './forwarding.js';
import {
  ChunkedDecoder,
  chunkHeader,
  isHeadError,
  LAST_CHUNK,
  parseRequestHead,
  parseResponseHead,
  type HeadError,
  type RequestHead,
  type ResponseHead,
} from './h1-parse.js';
import { downstreamResponseHeaders } from './headers.js';
import { endLingering } from './lingering-close.js';
import { adoptSharedReads } from './shared-read-buffer.js';

/** What the connection needs of the listener that owns it. */
export interface Http1Listener {
  readonly forwarding: ForwardContext;
  readonly access: AccessLog;
  readonly app: AppConnections;
  admit(
    head: AdmittedHead,
    ex: Exchange,
    refuse: (a: Admission & { admitted: false }) => void,
    go: (a: Admission & { admitted: true }) => void,
  ): void;
  target(head: AdmittedHead, admitted: Admission & { admitted: true }, ex: Exchange, endStream: boolean): ForwardTarget;
  /** An upgrade request: the socket is the tunnel's from now on; `early`, what the caller sent past the head. */
  upgrade(head: AdmittedHead, ex: Exchange, early: Buffer): void;
}

const CRLF = Buffer.from('\r\n');
const LINE_BREAKING = /[\r\n\0]/;
const HEAD_END = Buffer.from('\n\r\n');
const BARE_LF_END = Buffer.from('\n\n');
/** The app's idle timeout when it states none (Node's default), and how long before it we stop using a connection. */
const UNSTATED_KEEP_ALIVE_MS = 5_000;
const KEEP_ALIVE_MARGIN_MS = 1_000;
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
/** Body bytes held while admission decides (a token checked against a slow issuer): then the caller is paused. */
const MAX_HELD_BODY = 64 * 1024;
/** `--request-body-min-rate` applies once a body has been read for this long (Kestrel's grace period). */
const MIN_RATE_GRACE_MS = 5_000;
/** Trailer fields of a chunked request body: parsed, bounded, dropped. */
const MAX_TRAILER_BYTES = 16 * 1024;

/** How a response body travels to the caller. */
type ResponseRelay =
  | 'none'
  | 'length'
  /** Chunked from the app, chunked to the caller: relayed as it comes, its framing checked. */
  | 'chunked'
  /** Chunked from the app, to an HTTP/1.0 caller: de-chunked, the connection closes after it. */
  | 'dechunk'
  /** Close-delimited from the app: re-chunked to an HTTP/1.1 caller (its connection stays). */
  | 'rechunk'
  /** Close-delimited from the app to an HTTP/1.0 caller: as it comes, then close. */
  | 'until-close';

/** One request and its response. */
interface Request {
  readonly head: RequestHead;
  readonly ex: Exchange;
  /** The request as admission reads it. */
  readonly admitted: AdmittedHead;
  /** Request body bytes still to come (Content-Length), or its chunked framing. */
  body: number | ChunkedDecoder | undefined;
  bodyDone: boolean;
  /** Admitted, and its head written to the app. */
  forwarding: boolean;
  /** Body bytes that came before admission decided. */
  held: Buffer[] | undefined;
  heldBytes: number;
  /** What was written to the caller: the status (0: nothing yet). */
  status: number;
  /** The app's response head, once parsed; the bytes of it so far. */
  response: ResponseHead | undefined;
  appBytes: Buffer | undefined;
  relay: ResponseRelay;
  /** Response body bytes still to come (Content-Length), or the chunked framing being relayed. */
  left: number;
  decoder: ChunkedDecoder | undefined;
  /** The connection closes once this exchange is over. */
  closeAfter: boolean;
  done: boolean;
  bodyTimer: NodeJS.Timeout | undefined;
  /** --request-body-min-rate: bytes, and time spent waiting for them (back-pressure excluded). */
  rateBytes: number;
  rateWaitedMs: number;
  rateSince: number;
}

export class Http1Connection {
  /** Bytes read and not yet parsed: a head in progress, or pipelined requests waiting their turn. */
  private buffered: Buffer | undefined;
  private request: Request | undefined;
  /**
   * Waiting for a head (its first byte has come: the header timeout), or idle between requests: which of the two
   * timers below counts now. Each timer is made once per connection and re-armed with refresh(), not made anew
   * for every request (issue 17: two timers made and cleared per request; with headers.ts's sets made only when
   * needed, 4.3% of a keep-alive request's CPU); one that is not armed may still fire, and does nothing.
   */
  private timerKind: 'header' | 'idle' | undefined;
  private headerTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** --upstream-timeout: the request whose response head is awaited, and the timer (made once, as above). */
  private awaiting: Request | undefined;
  private upstreamTimer: NodeJS.Timeout | undefined;
  /** A response write the caller is not taking (--response-write-timeout). */
  private writeTimer: NodeJS.Timeout | undefined;
  /** Close once the exchange under way is over (drain, expiry, the caller's half-close). */
  private closing = false;
  private app: Socket | undefined;
  /** The app connection is idle and may carry another request (its last response ended cleanly). */
  private appReusable = false;
  /**
   * The app connection answered a HEAD or 304 whose framing announced a body: this caller's next request may use
   * it (an app that sends such a body anyway harms only the caller it answered), but it never goes to the pool,
   * where the late body would become another caller's response.
   */
  private appKeptForCaller = false;
  private appKeepAliveMs: number | undefined;
  private appIdleSince = 0;
  /** The caller is paused: by the app's back-pressure on a body, or by pipelined bytes piling up. */
  private pausedForApp = false;
  /**
   * The caller is paused because it is not reading our answers: the next pipelined request is parsed only once
   * they have drained. Without it a caller that pipelines requests we refuse at once (a 403 needs no app) and
   * reads nothing would have answers queued without bound (node:http stops parsing the same way).
   */
  private pausedForCaller = false;
  /** Bytes of `buffered` already searched for the end of a head. */
  private scanned = 0;
  /** Inside the parse loop: a request that ends synchronously does not re-enter it. */
  private parsing = false;
  /** Handed to the WebSocket tunnel. */
  private detached = false;

  private readonly onData = (chunk: Buffer) => this.read(chunk);
  private readonly onAppData = (chunk: Buffer) => this.appRead(chunk);
  private readonly onAppDrain = () => {
    if (this.pausedForApp) {
      this.pausedForApp = false;
      this.socket.resume();
      const req = this.request;
      if (req && !req.bodyDone && req.forwarding) this.watchBody(req);
    }
  };
  private readonly onAppEnd = () => this.appEnded(undefined);
  private readonly onAppError = (err: Error) => this.appEnded(err);

  constructor(
    private readonly listener: Http1Listener,
    readonly socket: Socket,
    private readonly gone: (conn: Http1Connection) => void,
  ) {
    socket.setNoDelay(true);
    adoptSharedReads(socket);
    socket.on('data', this.onData);
    socket.on('error', () => {});
    socket.on('drain', () => {
      clearTimeout(this.writeTimer);
      this.writeTimer = undefined;
      this.app?.resume();
      if (this.pausedForCaller) {
        this.pausedForCaller = false;
        if (!this.pausedForApp) this.socket.resume();
        if (this.request === undefined && this.buffered !== undefined) this.parse();
      }
    });
    socket.on('end', () => {
      // The caller's FIN: over TLS a client that leaves and one that half-closes look alike, and node:http
      // takes both for gone (its default): the exchange under way is cut, nothing more is read.
      if (!this.detached) this.socket.destroy();
    });
    socket.once('close', () => this.closed());
    // A new connection must send its first head within the header timeout.
    this.arm('header');
  }

  /** No request under way: nothing is lost by closing. */
  get idle(): boolean {
    return this.request === undefined && !this.detached;
  }

  /** Close now if idle, else once the response under way is written. */
  closeWhenIdle(): void {
    this.closing = true;
    if (this.idle) this.socket.destroy();
  }

  private get limits() {
    return this.listener.forwarding.limits;
  }

  // ── Timers of the connection: the header timeout (slowloris) and the idle keep-alive timeout ──

  private arm(kind: 'header' | 'idle'): void {
    this.timerKind = kind;
    if (kind === 'header') {
      if (this.headerTimer === undefined)
        this.headerTimer = setTimeout(this.onHeaderTimer, this.limits.headerTimeoutMs);
      else this.headerTimer.refresh();
    } else if (this.idleTimer === undefined) this.idleTimer = setTimeout(this.onIdleTimer, this.limits.idleTimeoutMs);
    else this.idleTimer.refresh();
  }

  private disarm(): void {
    this.timerKind = undefined;
  }

  private readonly onHeaderTimer = () => this.timerFired('header');
  private readonly onIdleTimer = () => this.timerFired('idle');

  /** Every timer of the connection, stopped: it is closed, or the tunnel's. */
  private clearTimers(): void {
    this.timerKind = undefined;
    this.awaiting = undefined;
    clearTimeout(this.headerTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.upstreamTimer);
    this.headerTimer = this.idleTimer = this.upstreamTimer = undefined;
  }

  private timerFired(kind: 'header' | 'idle'): void {
    // Disarmed or re-armed for the other kind since: nothing to do.
    if (this.timerKind !== kind) return;
    this.timerKind = undefined;
    if (kind === 'header' && this.buffered !== undefined) {
      // Part of a head came, not all of it within the header timeout (slowloris): 408, then close.
      logRequestRefused(
        this.listener.forwarding.log,
        this.listener.forwarding.metrics,
        'header_timeout',
        408,
        this.socket.remoteAddress,
      );
      // Nothing more is parsed: bytes that would complete the head after its 408 never become a request.
      this.closing = true;
      this.buffered = undefined;
      endLingering(this.socket, answerMessage(answer(408, 'header_timeout'), true).text);
      return;
    }
    this.socket.destroy();
  }

  // ── Reading from the caller ──

  private read(chunk: Buffer): void {
    const req = this.request;
    if (req && !req.bodyDone && req.body !== undefined) {
      this.bodyRead(req, chunk);
      return;
    }
    this.buffer(chunk);
  }

  /** Bytes that are not the body under way: a head, or the next requests. */
  private buffer(chunk: Buffer): void {
    // Closing after the answer under way: what the caller sends past it is not read.
    if (this.closing && this.request === undefined) return;
    if (this.buffered === undefined) {
      this.buffered = chunk;
      this.scanned = 0;
    } else this.buffered = Buffer.concat([this.buffered, chunk]);
    if (this.request) {
      // Pipelined: held until the response before them is over, and no more than a head's worth.
      if (this.buffered.length > this.limits.maxHeaderBytes && !this.pausedForApp) this.socket.pause();
      return;
    }
    this.parse();
  }

  private parse(): void {
    if (this.parsing) return;
    this.parsing = true;
    try {
      while (
        this.request === undefined &&
        this.buffered !== undefined &&
        !this.closing &&
        !this.socket.destroyed &&
        !this.detached
      ) {
        if (this.socket.writableNeedDrain) {
          // Our answers are not being read: the next request waits for 'drain' (--response-write-timeout bounds it).
          this.pausedForCaller = true;
          this.socket.pause();
          this.writeTimer ??= setTimeout(() => this.writeStalled(), this.limits.responseWriteTimeoutMs);
          return;
        }
        const { maxHeaderBytes, maxHeaderCount } = this.limits;
        const buffered = this.buffered;
        // Parsed only once its end has come: a head trickled in byte by byte is searched (natively) once per
        // byte, never parsed from its start once per byte (quadratic, and a CPU flood of one connection).
        // The first empty line ends a head: CRLF CRLF, or (refused by the parser, at once) a bare LF's. Searched
        // for only when there is no CRLF CRLF: before one, the parser refuses a bare LF's line ending all the same.
        const from = this.scanned > 2 ? this.scanned - 2 : 0;
        const crlf = buffered.indexOf(HEAD_END, from);
        const end = crlf >= 0 ? crlf : buffered.indexOf(BARE_LF_END, from);
        if (end < 0) {
          this.scanned = buffered.length;
          if (buffered.length > maxHeaderBytes) this.refuseHead({ status: 431, reason: 'headers_too_large' });
          else if (this.timerKind !== 'header') this.arm('header');
          return;
        }
        const head = parseRequestHead(buffered, maxHeaderBytes, maxHeaderCount);
        if (head === undefined) {
          // The end found was that of empty lines before a request line.
          this.scanned = end + 3;
          if (this.timerKind !== 'header') this.arm('header');
          return;
        }
        this.scanned = 0;
        if (isHeadError(head)) {
          this.refuseHead(head);
          return;
        }
        const rest = head.headBytes < this.buffered.length ? this.buffered.subarray(head.headBytes) : undefined;
        this.buffered = undefined;
        this.disarm();
        this.begin(head, rest);
      }
    } finally {
      this.parsing = false;
    }
    if (this.request === undefined && this.buffered === undefined && !this.detached) {
      if (this.closing) this.socket.end();
      else if (!this.socket.destroyed) this.arm('idle');
    }
  }

  /** A head we will not read: answered, and the connection closed (its framing cannot be trusted). */
  private refuseHead(error: HeadError): void {
    this.buffered = undefined;
    this.disarm();
    const { log, metrics } = this.listener.forwarding;
    logRequestRefused(log, metrics, error.reason, error.status, this.socket.remoteAddress);
    this.closing = true;
    endLingering(this.socket, answerMessage(answer(error.status, error.reason), true).text);
  }

  // ── One request ──

  private begin(head: RequestHead, rest: Buffer | undefined): void {
    const { access } = this.listener;
    const socket = this.socket;
    const ex = new Exchange(
      access,
      head.upgrade ? 'websocket' : 'http/1.1',
      head.method,
      head.url,
      socket.remoteAddress,
      head.headers.traceparent,
    );
    const admitted: AdmittedHead = {
      socket,
      method: head.method,
      url: head.url,
      headers: head.headers,
      rawHeaders: head.rawHeaders,
    };
    if (head.upgrade) {
      this.upgrade(admitted, ex, rest);
      return;
    }
    const framing = head.body;
    const req: Request = {
      head,
      ex,
      admitted,
      body:
        framing.kind === 'length' && framing.length > 0
          ? framing.length
          : framing.kind === 'chunked'
            ? new ChunkedDecoder(MAX_TRAILER_BYTES)
            : undefined,
      bodyDone: false,
      forwarding: false,
      held: undefined,
      heldBytes: 0,
      status: 0,
      response: undefined,
      appBytes: undefined,
      relay: 'none',
      left: 0,
      decoder: undefined,
      closeAfter: !head.keepAlive,
      done: false,
      bodyTimer: undefined,
      rateBytes: 0,
      rateWaitedMs: 0,
      rateSince: 0,
    };
    req.bodyDone = req.body === undefined;
    this.request = req;
    if (head.expectOther) {
      this.reply(req, answer(417, 'unsupported_expectation'), false);
      return;
    }
    if (rest !== undefined) {
      if (req.bodyDone) this.buffered = rest;
      else this.bodyRead(req, rest);
    }
    if (req.done) return;
    this.listener.admit(
      admitted,
      ex,
      (refused) => {
        if (refused.answer) this.reply(req, refused.answer, refused.keepAlive === true);
        else socket.destroy();
      },
      (ok) => this.forward(req, ok),
    );
  }

  /** Admitted: the head to the app, with what of the body has come, then the rest as it comes. */
  private forward(req: Request, ok: Admission & { admitted: true }): void {
    if (req.done || this.socket.destroyed) return;
    const target = this.listener.target(req.admitted, ok, req.ex, false);
    // 100 Continue only now: a refused caller is never invited to send its body.
    if (req.head.expectContinue && !req.bodyDone && req.heldBytes === 0) this.socket.write(CONTINUE);
    let head = `${target.method} ${target.url} HTTP/1.1\r\n`;
    const fields = target.fields;
    for (let i = 0; i < fields.length; i += 2) {
      // The caller's fields were parsed without these; ours (identity, claims) are checked where they are made.
      // Checked again here, where a field would otherwise become two: never a header injected into the app.
      if (LINE_BREAKING.test(fields[i + 1])) {
        req.ex.fail('upstream_error');
        this.reply(req, answer(500, 'invalid_header_value'), false);
        return;
      }
      head += `${fields[i]}: ${fields[i + 1]}\r\n`;
    }
    // HTTP/1.0 may leave Host out, but the app reads HTTP/1.1, which must have one (RFC 9112 §3.2; a Node app
    // answers 400 without it): the app's own authority, as nginx sends by default.
    if (req.head.minor === 0 && req.head.headers.host === undefined) {
      head += `host: ${this.listener.forwarding.upstream.host}\r\n`;
    }
    const app = this.appConnection(req);
    req.forwarding = true;
    const lastChunk = req.bodyDone && req.body instanceof ChunkedDecoder;
    if (req.held === undefined && !lastChunk) {
      // The head alone (most requests): one write, without the stream's cork buffering.
      app.write(`${head}\r\n`, 'latin1');
    } else {
      // The head and the body bytes that came before admission decided: one write to the app.
      app.cork();
      app.write(`${head}\r\n`, 'latin1');
      if (req.held) for (const data of req.held) this.bodyToApp(req, data);
      req.held = undefined;
      if (lastChunk) app.write(LAST_CHUNK);
      app.uncork();
    }
    if (req.heldBytes >= MAX_HELD_BODY && !this.pausedForApp) this.socket.resume();
    if (req.bodyDone) this.awaitResponse(req);
    else this.watchBody(req);
  }

  /** The caller's connection to the app: the one it had, else one from the pool. */
  private appConnection(req: Request): Socket {
    let socket = this.app;
    let reused = true;
    if (socket !== undefined && this.appStale()) {
      this.releaseApp(false);
      socket = undefined;
    }
    this.appReusable = false;
    if (socket === undefined || socket.destroyed) {
      ({ socket, reused } = this.listener.app.take());
      this.app = socket;
      socket.on('data', this.onAppData);
      socket.on('drain', this.onAppDrain);
      socket.on('end', this.onAppEnd);
      socket.on('error', this.onAppError);
    }
    const { log } = this.listener.forwarding;
    if (log.isLevelEnabled('debug'))
      log.debug(
        { event: 'app_connection', request_id: req.ex.id, protocol: 'http/1.1', reused },
        reused ? 'app connection reused' : 'app connection opened',
      );
    return socket;
  }

  /**
   * The kept app connection has been idle for about as long as the app keeps idle connections (its
   * `Keep-Alive: timeout`, else Node's 5 s): a request on it could cross the app's close. A new one instead.
   */
  private appStale(): boolean {
    const limitMs = (this.appKeepAliveMs ?? UNSTATED_KEEP_ALIVE_MS) - KEEP_ALIVE_MARGIN_MS;
    return !this.appReusable || performance.now() - this.appIdleSince > limitMs;
  }

  /** The app connection is no longer this caller's: back to the pool if it may be reused, else closed. */
  private releaseApp(reusable: boolean, keepAliveMs?: number): void {
    const app = this.app;
    if (!app) return;
    this.app = undefined;
    this.appReusable = false;
    if (this.appKeptForCaller) reusable = false;
    this.appKeptForCaller = false;
    // Paused (its caller stopped reading) or holding unread bytes: it would stall, or answer, someone else.
    const clean = !app.isPaused() && app.readableLength === 0;
    app.off('data', this.onAppData);
    app.off('drain', this.onAppDrain);
    app.off('end', this.onAppEnd);
    app.off('error', this.onAppError);
    if (reusable && clean) this.listener.app.give(app, keepAliveMs);
    else app.destroy();
  }

  // ── The request body ──

  private bodyRead(req: Request, chunk: Buffer): void {
    let rest: Buffer | undefined;
    const app = req.forwarding ? this.app : undefined;
    app?.cork();
    if (typeof req.body === 'number') {
      const n = Math.min(req.body, chunk.length);
      this.bodyData(req, n === chunk.length ? chunk : chunk.subarray(0, n));
      req.body -= n;
      if (req.body === 0) req.bodyDone = true;
      if (n < chunk.length) rest = chunk.subarray(n);
    } else if (req.body instanceof ChunkedDecoder) {
      const decoder = req.body;
      const consumed = decoder.push(chunk, 0, (data) => this.bodyData(req, data));
      if (isHeadError(consumed)) {
        app?.uncork();
        this.bodyFailed(req, consumed);
        return;
      }
      if (decoder.done) {
        req.bodyDone = true;
        if (req.forwarding) this.app?.write(LAST_CHUNK);
        if (consumed < chunk.length) rest = chunk.subarray(consumed);
      }
    }
    app?.uncork();
    if (req.bodyDone) {
      clearTimeout(req.bodyTimer);
      req.bodyTimer = undefined;
      if (req.forwarding && req.response === undefined) this.awaitResponse(req);
    }
    if (rest !== undefined) this.buffer(rest);
  }

  private bodyData(req: Request, data: Buffer): void {
    if (data.length === 0) return;
    if (req.forwarding) {
      this.bodyToApp(req, data);
      this.bodyProgress(req, data.length);
      return;
    }
    (req.held ??= []).push(data);
    req.heldBytes += data.length;
    // Admission is taking its time: hold no more than this, the caller waits.
    if (req.heldBytes >= MAX_HELD_BODY) this.socket.pause();
  }

  private bodyToApp(req: Request, data: Buffer): void {
    const app = this.app as Socket;
    req.ex.bytesIn += data.length;
    let flowing: boolean;
    if (req.body instanceof ChunkedDecoder) {
      app.write(chunkHeader(data.length));
      app.write(data);
      flowing = app.write(CRLF);
    } else flowing = app.write(data);
    if (!flowing && !this.pausedForApp) {
      // The app is not taking the body as fast as it comes: the caller waits (and is not "idle" meanwhile).
      this.pausedForApp = true;
      this.socket.pause();
      clearTimeout(req.bodyTimer);
      req.bodyTimer = undefined;
      req.rateWaitedMs += performance.now() - req.rateSince;
    }
  }

  /** --request-body-timeout and --request-body-min-rate: armed while we wait for body bytes. */
  private watchBody(req: Request): void {
    const ctx = this.listener.forwarding;
    if (isGrpc(req.head.headers['content-type'])) return;
    req.rateSince = performance.now();
    clearTimeout(req.bodyTimer);
    req.bodyTimer = setTimeout(() => this.bodyStalled(req, 'request_body_timeout'), ctx.limits.requestBodyTimeoutMs);
  }

  private bodyProgress(req: Request, bytes: number): void {
    if (req.bodyTimer === undefined) return;
    req.bodyTimer.refresh();
    const minRate = this.limits.requestBodyMinRate;
    if (minRate <= 0) return;
    const now = performance.now();
    req.rateBytes += bytes;
    req.rateWaitedMs += now - req.rateSince;
    req.rateSince = now;
    if (req.rateWaitedMs > MIN_RATE_GRACE_MS && (req.rateBytes * 1000) / req.rateWaitedMs < minRate)
      this.bodyStalled(req, 'request_body_too_slow');
  }

  private bodyStalled(req: Request, reason: 'request_body_timeout' | 'request_body_too_slow'): void {
    if (req.done) return;
    clearTimeout(req.bodyTimer);
    logStall(this.listener.forwarding, reason, this.socket);
    req.ex.fail('caller_timeout');
    this.releaseApp(false);
    if (req.status !== 0) this.socket.destroy();
    else this.reply(req, answer(408, reason), false);
  }

  /** A chunked body we cannot read: 400 if nothing was answered yet, and the connection goes. */
  private bodyFailed(req: Request, error: HeadError): void {
    const { log, metrics } = this.listener.forwarding;
    logRequestRefused(log, metrics, error.reason, error.status, this.socket.remoteAddress);
    this.releaseApp(false);
    if (req.status !== 0) this.socket.destroy();
    else this.reply(req, answer(error.status, error.reason), false);
  }

  // ── The response ──

  /** The whole request is with the app: --upstream-timeout runs until its response head. */
  private awaitResponse(req: Request): void {
    // Once per request: its body ends once (a second call while it is awaited re-arms nothing).
    if (this.awaiting === req || req.response !== undefined) return;
    this.awaiting = req;
    if (this.upstreamTimer === undefined)
      this.upstreamTimer = setTimeout(this.onUpstreamTimer, this.limits.upstreamTimeoutMs);
    else this.upstreamTimer.refresh();
  }

  /** The response head came, or the exchange is over: the upstream timer no longer counts for it. */
  private stopAwaiting(req: Request): void {
    if (this.awaiting === req) this.awaiting = undefined;
  }

  private readonly onUpstreamTimer = () => {
    const req = this.awaiting;
    this.awaiting = undefined;
    // Nothing awaited (a timer left from a request answered since): nothing to do.
    if (req === undefined || req.done || req.response !== undefined) return;
    req.ex.fail('upstream_timeout');
    this.releaseApp(false);
    upstreamFailed(
      this.listener.forwarding,
      'upstream_timeout',
      false,
      (a, keepAlive) => this.reply(req, a, keepAlive === true),
      () => this.socket.destroy(),
      new Error(`the app sent no response headers within ${this.limits.upstreamTimeoutMs} ms`),
    );
  };

  private appRead(chunk: Buffer): void {
    const req = this.request;
    if (!req || !req.forwarding || req.done) {
      // Bytes from the app with no request of ours under way: that connection cannot be trusted.
      this.releaseApp(false);
      return;
    }
    if (req.response === undefined) {
      const bytes = req.appBytes === undefined ? chunk : Buffer.concat([req.appBytes, chunk]);
      req.appBytes = undefined;
      this.responseHead(req, bytes);
      return;
    }
    this.responseBody(req, chunk);
  }

  private responseHead(req: Request, bytes: Buffer): void {
    let start = 0;
    for (;;) {
      const view = start === 0 ? bytes : bytes.subarray(start);
      const head = parseResponseHead(view, this.limits.maxHeaderBytes, req.head.method);
      if (head === undefined) {
        req.appBytes = view;
        return;
      }
      if (isHeadError(head) || head.status === 101) {
        this.appFailed(
          req,
          new Error(isHeadError(head) ? `the app's response: ${head.reason}` : 'the app switched protocols unasked'),
        );
        return;
      }
      start += head.headBytes;
      // 1xx (100 Continue, 103 Early Hints): interim, never relayed (we answer 100 Continue ourselves).
      if (head.status < 200) continue;
      // The head and what came of the body with it leave in one write: one TLS record, one syscall.
      const text = this.respond(req, head);
      const body = start < bytes.length ? bytes.subarray(start) : undefined;
      if (body !== undefined && req.relay === 'length') {
        // Most responses: a body of known length, all or part of it here, joined to the head in one buffer.
        this.responseBody(req, body, text);
        return;
      }
      this.socket.cork();
      this.toCaller(text);
      if (body !== undefined) this.responseBody(req, body);
      this.socket.uncork();
      if (body === undefined && (req.relay === 'none' || (req.relay === 'length' && req.left === 0)))
        this.responseDone(req, true);
      return;
    }
  }

  /**
   * The status line and fields for the caller (returned, to be written with the body bytes that came with
   * them): never the app's reason phrase, never its hop-by-hop fields.
   */
  private respond(req: Request, head: ResponseHead): string {
    this.stopAwaiting(req);
    req.response = head;
    req.ex.reached();
    const http10 = req.head.minor === 0;
    const ctx = this.listener.forwarding;
    if (ctx.draining() || this.closing || !req.bodyDone) req.closeAfter = true;
    let framing = '';
    switch (head.body.kind) {
      case 'none':
        req.relay = 'none';
        break;
      case 'length':
        req.relay = 'length';
        req.left = head.body.length;
        break;
      case 'chunked':
        req.decoder = new ChunkedDecoder(MAX_TRAILER_BYTES);
        if (http10) {
          req.relay = 'dechunk';
          req.closeAfter = true;
        } else {
          req.relay = 'chunked';
          framing = 'transfer-encoding: chunked\r\n';
        }
        break;
      case 'close':
        if (http10) {
          req.relay = 'until-close';
          req.closeAfter = true;
        } else {
          req.relay = 'rechunk';
          framing = 'transfer-encoding: chunked\r\n';
        }
        break;
    }
    // Content-Length is ours to write (RFC 9112 §6.3, RFC 9110 §8.6): one field, in our digits (an app's `010` or
    // its repeats are not passed on), none on a 204; on a HEAD or 304 response the app's declared length.
    if (head.contentLength !== undefined && head.status !== 204) framing = `content-length: ${head.contentLength}\r\n`;
    const fields = downstreamResponseHeaders(head.rawHeaders, true);
    let text = `HTTP/1.1 ${head.status} ${nodeHttp.STATUS_CODES[head.status] ?? 'Unknown'}\r\n`;
    for (let i = 0; i < fields.length; i += 2) text += `${fields[i]}: ${fields[i + 1]}\r\n`;
    text += framing;
    if (req.closeAfter) text += 'connection: close\r\n';
    else if (http10) text += 'connection: keep-alive\r\n';
    req.status = head.status;
    return `${text}\r\n`;
  }

  /**
   * Body bytes from the app. `head`: the response head not yet written ('length' relay only), which leaves
   * with them in one buffer, so that the TLS socket writes it without a writev's array and copy.
   */
  private responseBody(req: Request, bytes: Buffer, head?: string): void {
    const ex = req.ex;
    switch (req.relay) {
      case 'none':
        // Bytes past a response without a body: the app connection is not reused.
        this.responseDone(req, false);
        return;
      case 'length': {
        const n = Math.min(req.left, bytes.length);
        const part = n === bytes.length ? bytes : bytes.subarray(0, n);
        this.toCaller(head === undefined ? part : joined(head, part));
        ex.bytesOut += n;
        req.left -= n;
        if (req.left === 0) this.responseDone(req, n === bytes.length);
        return;
      }
      case 'chunked':
      case 'dechunk': {
        const decoder = req.decoder as ChunkedDecoder;
        const dechunk = req.relay === 'dechunk';
        const consumed = decoder.push(bytes, 0, (data) => {
          ex.bytesOut += data.length;
          if (dechunk) this.toCaller(data);
        });
        if (isHeadError(consumed)) {
          this.appFailed(req, new Error(`the app's response body: ${consumed.reason}`));
          return;
        }
        if (!dechunk) this.toCaller(consumed === bytes.length ? bytes : bytes.subarray(0, consumed));
        if (decoder.done) this.responseDone(req, consumed === bytes.length);
        return;
      }
      case 'rechunk':
        ex.bytesOut += bytes.length;
        this.socket.cork();
        this.toCaller(chunkHeader(bytes.length));
        this.toCaller(bytes);
        this.toCaller(CRLF);
        this.socket.uncork();
        return;
      case 'until-close':
        ex.bytesOut += bytes.length;
        this.toCaller(bytes);
        return;
    }
  }

  private toCaller(data: string | Buffer): void {
    const flowing = typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
    if (flowing || this.writeTimer !== undefined) return;
    // The caller is not reading: the app waits, for --response-write-timeout at most.
    this.app?.pause();
    this.writeTimer = setTimeout(() => this.writeStalled(), this.limits.responseWriteTimeoutMs);
  }

  private writeStalled(): void {
    this.writeTimer = undefined;
    logStall(this.listener.forwarding, 'response_write_timeout', this.socket);
    this.request?.ex.fail('caller_timeout');
    this.releaseApp(false);
    this.socket.destroy();
  }

  /** The app's response is over: the exchange ends, and the connection serves the next request or closes. */
  private responseDone(req: Request, appClean: boolean): void {
    const head = req.response as ResponseHead;
    const reusable =
      appClean && head.keepAlive && req.bodyDone && req.relay !== 'rechunk' && req.relay !== 'until-close';
    if (head.announcesBody) this.appKeptForCaller = true;
    // Kept for this caller's next request; the pool's when the caller leaves.
    if (reusable) {
      this.appReusable = true;
      this.appKeepAliveMs = head.keepAliveTimeoutMs;
      this.appIdleSince = performance.now();
    } else this.releaseApp(false);
    this.finish(req);
  }

  /** The app ended or failed its connection. */
  private appEnded(err: Error | undefined): void {
    const req = this.request;
    if (!req || !req.forwarding || req.done) {
      this.releaseApp(false);
      return;
    }
    if (req.response !== undefined && (req.relay === 'rechunk' || req.relay === 'until-close') && !err) {
      // A close-delimited body ends with the app's connection.
      if (req.relay === 'rechunk') this.toCaller(LAST_CHUNK);
      else req.closeAfter = true;
      this.releaseApp(false);
      this.finish(req);
      return;
    }
    this.appFailed(req, err ?? new Error('the app closed its connection before the end of its response'));
  }

  /** The app failed: 502 if the caller got nothing yet, else its response is cut. */
  private appFailed(req: Request, err: Error): void {
    this.stopAwaiting(req);
    this.releaseApp(false);
    req.ex.fail('upstream_error');
    upstreamFailed(
      this.listener.forwarding,
      'upstream_unreachable',
      req.status !== 0,
      (a, keepAlive) => this.reply(req, a, keepAlive === true),
      () => this.socket.destroy(),
      err,
    );
  }

  /**
   * One of our answers. The connection stays open only if `keepAlive` and the request's body has all come
   * (the rest of a refused body is never waited for: read and dropped only within the lingering close's bounds,
   * so a caller cannot hold the connection by trickling one).
   */
  private reply(req: Request, a: Answer, keepAlive: boolean): void {
    if (req.done || req.status !== 0) return;
    const close = !keepAlive || !req.bodyDone || req.closeAfter || this.closing || this.listener.forwarding.draining();
    const { text, bodyBytes } = answerMessage(a, close, req.head.method === 'HEAD', req.head.minor === 0);
    req.status = a.status;
    req.ex.bytesOut += bodyBytes;
    req.closeAfter = close;
    if (!req.bodyDone) this.releaseApp(false);
    this.toCaller(text);
    this.finish(req);
  }

  /** The exchange is over (a cut one ends in closed()): its access line, then the next request, or the end. */
  private finish(req: Request): void {
    if (req.done) return;
    req.done = true;
    this.stopAwaiting(req);
    clearTimeout(req.bodyTimer);
    this.request = undefined;
    req.ex.end(req.status, false);
    if (!req.bodyDone) req.closeAfter = true;
    if (req.closeAfter || this.closing) {
      this.closing = true;
      // The rest of a body we did not read, or requests pipelined behind this one, may still be coming.
      const more = !req.bodyDone || this.buffered !== undefined;
      this.buffered = undefined;
      if (more) endLingering(this.socket);
      else {
        this.socket.end();
        this.socket.destroySoon();
      }
      return;
    }
    this.pausedForApp = false;
    if (this.socket.isPaused() && !this.pausedForCaller) this.socket.resume();
    if (this.buffered !== undefined) this.parse();
    else if (!this.parsing && !this.socket.destroyed) this.arm('idle');
  }

  // ── WebSocket ──

  /**
   * An upgrade request: admitted like any request; only WebSocket is tunnelled (any other protocol, h2c
   * among them, would carry requests past header stripping). The socket is the tunnel's from here on; its
   * access line is written when the tunnel ends.
   */
  private upgrade(head: AdmittedHead, ex: Exchange, rest: Buffer | undefined): void {
    this.detached = true;
    this.clearTimers();
    this.socket.off('data', this.onData);
    // Until the tunnel reads it: a flowing socket with no listener would read the caller's first frames (sent
    // before the app's 101, or while admission decides) and drop them. Paused, they wait in its queue (bounded).
    this.socket.pause();
    this.releaseApp(false);
    this.listener.upgrade(head, ex, rest ?? Buffer.alloc(0));
  }

  // ── The end ──

  private closed(): void {
    this.clearTimers();
    clearTimeout(this.writeTimer);
    const req = this.request;
    this.request = undefined;
    // The pool counts its deadline from now; the app has been counting since its last response. What it gets is
    // what is left: a connection this caller kept idle for most of the app's timeout is closed, not pooled (it
    // was once reused just as the app reset it: a 502).
    const idleMs = performance.now() - this.appIdleSince;
    this.releaseApp(this.appReusable && req === undefined, (this.appKeepAliveMs ?? UNSTATED_KEEP_ALIVE_MS) - idleMs);
    if (req && !req.done) {
      req.ex.fail('caller_reset');
      req.done = true;
      clearTimeout(req.bodyTimer);
      req.ex.end(req.status, true);
    }
    this.gone(this);
  }
}

/** A latin1 head and body bytes in one buffer. */
function joined(head: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(head.length + body.length);
  out.write(head, 0, head.length, 'latin1');
  body.copy(out, head.length);
  return out;
}
