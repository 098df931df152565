// What every forwarder to the app shares: where the app is and the connections to it, the limits, and the
// handling of a caller that stalls (--request-body-timeout, --request-body-min-rate, --response-write-timeout)
// or an app that fails (502/504): logged, counted, answered from the one catalogue.
import type * as http from 'node:http';
import { nodeHttp } from '../node-http.js';
import type { Socket } from 'node:net';
import type { ProxyMetrics } from './proxy-metrics.js';
import type { Logger } from '../log.js';
import { type Answer, answer } from './answers.js';
import type { H2cUpstream } from './h2c-upstream.js';
import type { HeaderPolicy, RequestOrigin } from './headers.js';
import type { InboundLimits } from './limits.js';
import type { RelayWatch } from './relay.js';

export interface ForwardContext {
  /** The app: an http: origin. */
  readonly upstream: URL;
  /** Connections to an HTTP/1.1 app: bounded like the callers'. */
  readonly agent: http.Agent;
  /** The session to an h2c app (`--upstream-protocol h2c`). */
  readonly h2c: H2cUpstream | undefined;
  readonly limits: InboundLimits;
  readonly headers: HeaderPolicy;
  /** Whether callers come over TLS (X-Forwarded-Proto). */
  readonly tls: boolean;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  /** A drain is under way: responses say `connection: close`. */
  draining(): boolean;
}

/** What to forward: the request line and the fields, already stripped and set for the app. */
export interface ForwardTarget {
  readonly method: string;
  readonly url: string;
  readonly fields: string[];
  /** The request has no body (HTTP/2: the HEADERS frame ended the stream). */
  readonly endStream: boolean;
}

/**
 * Writes one of our answers to the caller. `keepAlive`: the caller's connection may stay open, if its
 * request has fully arrived (HTTP/1.1; an HTTP/2 stream ends either way).
 */
export type Reply = (a: Answer, keepAlive?: boolean) => void;

export type BodyTimeoutReason = 'request_body_timeout' | 'request_body_too_slow';
type StallReason = BodyTimeoutReason | 'response_write_timeout' | 'tunnel_idle_timeout';

/** `--request-body-min-rate` applies once a body has been read for this long (Kestrel's grace period). */
const MIN_RATE_GRACE_MS = 5_000;

/**
 * The whole request has arrived: Node says so only after the 'request' event, so a request that frames
 * no body (RFC 9112 §6.3: neither Content-Length nor Transfer-Encoding) counts as arrived from the start.
 */
export function bodyArrived(req: http.IncomingMessage): boolean {
  if (req.complete) return true;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

/** The request frames a body (RFC 9112 §6.3): else there are no body bytes to count. */
export function mayHaveBody(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The request to an HTTP/1.1 app: the target's line and fields as given (Host among them: never set by
 * Node), over the pooled connections, or a connection of its own (`agent: false`, an upgrade).
 */
export function requestToApp(
  ctx: ForwardContext,
  target: ForwardTarget,
  agent: http.Agent | false = ctx.agent,
): http.ClientRequest {
  return nodeHttp.request({
    host: ctx.upstream.hostname,
    port: ctx.upstream.port,
    method: target.method,
    path: target.url,
    headers: target.fields,
    setHost: false,
    agent,
  });
}

/** Who connected, for X-Forwarded-For and X-Forwarded-Proto. */
export function originOf(ctx: ForwardContext, socket: Socket): RequestOrigin {
  return { address: socket.remoteAddress, proto: ctx.tls ? 'https' : 'http' };
}

/** The content type in a flat field list, if any. */
export function contentTypeOf(fields: readonly string[]): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i].toLowerCase() === 'content-type') return fields[i + 1];
  return undefined;
}

/**
 * `--log-level debug`: the app connection a request went out on, new or reused (HTTP/1.1 apps; forward-h2c.ts
 * says the same of an h2c app's session). Nothing is attached when the level is off.
 */
export function logAppConnection(ctx: ForwardContext, upstreamReq: http.ClientRequest, requestId: string): void {
  if (!ctx.log.isLevelEnabled('debug')) return;
  upstreamReq.once('socket', () =>
    ctx.log.debug(
      { event: 'app_connection', request_id: requestId, protocol: 'http/1.1', reused: upstreamReq.reusedSocket },
      upstreamReq.reusedSocket ? 'app connection reused' : 'app connection opened',
    ),
  );
}

export function logStall(ctx: ForwardContext, reason: StallReason, socket: Socket): void {
  ctx.log.warn({ event: 'request_timeout', reason, remote: socket.remoteAddress }, 'the caller stalled');
}

/** A gRPC request (gRPC over HTTP/2: `application/grpc`, `application/grpc+proto`, …). */
export function isGrpc(contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && contentType.startsWith('application/grpc');
}

/**
 * `--request-body-timeout`: a caller that stops sending its body while we wait for it; and
 * `--request-body-min-rate`: one that trickles it. `onStall` answers (408, or cuts a response under way)
 * and closes; this logs. gRPC streams are exempt from both: a client or bidi stream (a watch, xDS) may
 * rightly send nothing for minutes, and gRPC keepalive (HTTP/2 PING) is what tells a live one from a dead
 * one; the idle HTTP/2 connection timeout still applies.
 */
export function requestBodyWatch(
  ctx: ForwardContext,
  socket: Socket,
  contentType: string | string[] | undefined,
  onStall: (reason: BodyTimeoutReason) => void,
): RelayWatch {
  const { requestBodyTimeoutMs, requestBodyMinRate } = ctx.limits;
  const grpc = isGrpc(contentType);
  return {
    sourceIdleMs: grpc ? undefined : requestBodyTimeoutMs,
    sourceMinRate:
      requestBodyMinRate > 0 && !grpc ? { bytesPerSecond: requestBodyMinRate, afterMs: MIN_RATE_GRACE_MS } : undefined,
    onStall: (stall) => {
      const reason = stall === 'source_too_slow' ? 'request_body_too_slow' : 'request_body_timeout';
      logStall(ctx, reason, socket);
      onStall(reason);
    },
  };
}

/** `--response-write-timeout`: a caller that takes no byte of its response while we have some for it. */
export function responseWatch(ctx: ForwardContext, socket: Socket, onStall: () => void): RelayWatch {
  return {
    destinationStallMs: ctx.limits.responseWriteTimeoutMs,
    onStall: () => {
      logStall(ctx, 'response_write_timeout', socket);
      onStall();
    },
  };
}

/** The app failed: a 502/504 if nothing was sent yet, else the response is cut. */
export function upstreamFailed(
  ctx: ForwardContext,
  reason: 'upstream_timeout' | 'upstream_unreachable',
  headersSent: boolean,
  reply: Reply,
  abort: () => void,
  detail?: Error,
): void {
  ctx.metrics.upstreamError(reason);
  if (headersSent) {
    abort();
    return;
  }
  ctx.log.warn(
    // `reason` is bounded (as the metric's label); the socket's own code, when there is one, is `error`.
    { event: 'upstream_error', reason, error: (detail as NodeJS.ErrnoException | undefined)?.code },
    detail?.message ?? 'the app did not answer',
  );
  // The caller did nothing wrong: its connection may stay (if its request fully arrived).
  reply(answer(reason === 'upstream_timeout' ? 504 : 502, reason), true);
}
