// An admitted HTTP/2 request to an HTTP/1.1 app: the body framed for HTTP/1.1 (chunked when its length is
// unknown, so that it can never be read as a second request), the response's fields carried back as
// HTTP/2 allows (else 502), under the same watches and --upstream-timeout as HTTP/1.1. What happened is
// reported to the exchange for the access line.
import type * as http2 from 'node:http2';
import { H2_INTERNAL_ERROR } from './h2-error-codes.js';
import type { Socket } from 'node:net';
import type { ExchangeProgress } from './access-log.js';
import { answer } from './answers.js';
import {
  contentTypeOf,
  type ForwardContext,
  type ForwardTarget,
  logAppConnection,
  type Reply,
  requestBodyWatch,
  requestToApp,
  responseWatch,
  upstreamFailed,
} from './forwarding.js';
import { downstreamResponseHeaders } from './headers.js';
import { h1FieldsToH2, respondH2 } from './http2-headers.js';
import { relay } from './relay.js';
import { startResponseTimer } from './response-timer.js';

export function forwardH2ToH1(
  ctx: ForwardContext,
  stream: http2.ServerHttp2Stream,
  socket: Socket,
  target: ForwardTarget,
  reply: Reply,
  ex: ExchangeProgress,
): void {
  const { limits } = ctx;
  const fields = [...target.fields];
  // A body of unknown length must be framed for HTTP/1.1, whatever the method: an unframed body would be
  // read by the app as a second request.
  const hasLength = fields.some((_, i) => i % 2 === 0 && fields[i].toLowerCase() === 'content-length');
  if (!target.endStream && !hasLength) fields.push('transfer-encoding', 'chunked');
  const upstreamReq = requestToApp(ctx, { ...target, fields });
  logAppConnection(ctx, upstreamReq, ex.id);
  const abort = () => stream.close(H2_INTERNAL_ERROR);
  let stalled = false;
  let timedOut = false;
  const timer = startResponseTimer(upstreamReq, limits.upstreamTimeoutMs, () => {
    timedOut = true;
    ex.fail('upstream_timeout');
    upstreamReq.destroy();
    upstreamFailed(ctx, 'upstream_timeout', stream.headersSent, reply, abort);
  });
  let complete = false;
  upstreamReq.on('response', (res) => {
    timer.clear();
    res.once('end', () => (complete = true));
    const status = res.statusCode ?? 502;
    ex.reached();
    const { headers } = h1FieldsToH2(downstreamResponseHeaders(res.rawHeaders));
    if (stream.destroyed) {
      res.destroy();
      return;
    }
    if (!respondH2(stream, status, headers)) {
      res.destroy();
      ex.fail('upstream_error');
      ctx.metrics.upstreamError('upstream_unreachable');
      reply(answer(502, 'bad_response'));
      return;
    }
    relay(
      res,
      stream,
      (_err, side) => ex.fail(side === 'source' ? 'upstream_error' : 'caller_reset'),
      responseWatch(ctx, socket, () => {
        ex.fail('caller_timeout');
        res.destroy();
        abort();
      }),
      (chunk) => (ex.bytesOut += chunk.length),
    );
  });
  upstreamReq.on('error', () => {
    timer.clear();
    // Our own doing (a timeout or a stalled caller, already answered and counted): not the app's failure.
    if (stalled || timedOut) return;
    ex.fail('upstream_error');
    upstreamFailed(ctx, 'upstream_unreachable', stream.headersSent, reply, abort);
  });
  if (target.endStream) upstreamReq.end();
  else {
    relay(
      stream,
      upstreamReq,
      undefined,
      requestBodyWatch(ctx, socket, contentTypeOf(target.fields), (reason) => {
        stalled = true;
        ex.fail('caller_timeout');
        timer.clear();
        upstreamReq.destroy();
        if (stream.headersSent) abort();
        else reply(answer(408, reason));
      }),
      (chunk) => (ex.bytesIn += chunk.length),
    );
  }
  stream.once('close', () => {
    timer.clear();
    if (!complete) upstreamReq.destroy();
  });
}
