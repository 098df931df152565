// An admitted request, from an HTTP/1.1 or HTTP/2 caller, to an app that speaks cleartext HTTP/2
// (`--upstream-protocol h2c`, for gRPC): streams both ways, trailers and trailers-only responses included
// for HTTP/2 callers, under the same watches and --upstream-timeout as the other forwarders. What happened
// is reported to the exchange for the access line.
import type { ExchangeProgress } from './access-log.js';
import { cancelStream } from './cancel-stream.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as http2 from 'node:http2';
import { H2_INTERNAL_ERROR } from './h2-error-codes.js';
import type { Socket } from 'node:net';
import { answer } from './answers.js';
import {
  contentTypeOf,
  type ForwardContext,
  isGrpc,
  type ForwardTarget,
  type Reply,
  requestBodyWatch,
  responseWatch,
  upstreamFailed,
} from './forwarding.js';
import { forwardH2Response } from './h2-response.js';
import { h1FieldsToH2, h2ResponseToH1 } from './http2-headers.js';
import { relay, type RelaySide } from './relay.js';
import { startResponseTimer } from './response-timer.js';

/** The caller's side: an HTTP/2 stream, or an HTTP/1.1 response and the request body it answers. */
export type H2cCaller = { h2: http2.ServerHttp2Stream } | { res: ServerResponse; body: IncomingMessage };

export function forwardToH2c(
  ctx: ForwardContext,
  caller: H2cCaller,
  socket: Socket,
  target: ForwardTarget,
  reply: Reply,
  ex: ExchangeProgress,
): void {
  const { upstream, limits, log } = ctx;
  const { headers, host } = h1FieldsToH2(target.fields);
  // gRPC requires `te: trailers` (the one TE value HTTP/2 allows); it went with the hop-by-hop fields, and
  // servers such as grpc-java refuse a call without it.
  if (isGrpc(contentTypeOf(target.fields))) headers.te = 'trailers';
  let up: http2.ClientHttp2Stream;
  const h2c = ctx.h2c as NonNullable<ForwardContext['h2c']>;
  const sessions = h2c.sessionsOpened;
  try {
    up = h2c.request(
      {
        ...headers,
        ':method': target.method,
        ':path': target.url,
        ':scheme': 'http',
        ':authority': host ?? upstream.host,
      },
      target.endStream,
    );
  } catch {
    ex.fail('upstream_error');
    upstreamFailed(ctx, 'upstream_unreachable', false, reply, () => {});
    return;
  }
  if (log.isLevelEnabled('debug')) {
    const reused = h2c.sessionsOpened === sessions;
    log.debug(
      { event: 'app_connection', request_id: ex.id, protocol: 'h2c', reused },
      reused ? 'app connection reused' : 'app connection opened',
    );
  }
  const h2 = 'h2' in caller ? caller.h2 : undefined;
  const res = 'res' in caller ? caller.res : undefined;
  const sent = () => (h2 ? h2.headersSent : (res as ServerResponse).headersSent);
  const abort = () => (h2 ? h2.close(H2_INTERNAL_ERROR) : (res as ServerResponse).destroy());
  let stalled = false;
  const timer = startResponseTimer(up, limits.upstreamTimeoutMs, () => {
    ex.fail('upstream_timeout');
    cancelStream(up);
    upstreamFailed(ctx, 'upstream_timeout', sent(), reply, abort);
  });
  const cut = () => {
    ex.fail('caller_timeout');
    cancelStream(up);
    abort();
  };
  const countOut = (chunk: Buffer) => (ex.bytesOut += chunk.length);
  const relayFailed = (_err: Error, side: RelaySide) => ex.fail(side === 'source' ? 'upstream_error' : 'caller_reset');
  up.on('response', (responseHeaders) => {
    timer.clear();
    const status = Number(responseHeaders[':status'] ?? 502);
    ex.reached();
    if (h2) {
      if (h2.destroyed) return;
      if (!forwardH2Response(up, h2, responseHeaders, responseWatch(ctx, socket, cut), countOut, relayFailed)) {
        ex.fail('upstream_error');
        reply(answer(502, 'bad_response'));
      }
      return;
    }
    const out = res as ServerResponse;
    try {
      out.writeHead(status, h2ResponseToH1(responseHeaders));
    } catch {
      cancelStream(up);
      ex.fail('upstream_error');
      reply(answer(502, 'bad_response'));
      return;
    }
    // HTTP/1.1 callers get the body; trailers need chunked encoding and a client that reads them.
    relay(up, out, relayFailed, responseWatch(ctx, socket, cut), countOut);
  });
  up.on('error', () => {
    timer.clear();
    if (stalled) return;
    ex.fail('upstream_error');
    upstreamFailed(ctx, 'upstream_unreachable', sent(), reply, abort);
  });
  if (!target.endStream) {
    relay(
      h2 ?? (caller as { body: IncomingMessage }).body,
      up,
      undefined,
      requestBodyWatch(ctx, socket, contentTypeOf(target.fields), (reason) => {
        stalled = true;
        ex.fail('caller_timeout');
        timer.clear();
        cancelStream(up);
        if (sent()) abort();
        else reply(answer(408, reason));
      }),
      (chunk) => (ex.bytesIn += chunk.length),
    );
  }
  (h2 ?? (res as ServerResponse)).once('close', () => {
    timer.clear();
    cancelStream(up);
  });
}
