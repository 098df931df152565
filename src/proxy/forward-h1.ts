// An admitted HTTP/1.1 request to an HTTP/1.1 app: the request head with the fields set for the app, the
// body relayed under the caller-stall watches, the app's response (never its reason phrase) relayed back
// under the write watch; --upstream-timeout counted from the end of the request. What happened is reported
// to the exchange (bytes, the app's answer, how it failed) for the access line.
import type * as http from 'node:http';
import type { ExchangeProgress } from './access-log.js';
import { answer } from './answers.js';
import {
  bodyArrived,
  type ForwardContext,
  type ForwardTarget,
  logAppConnection,
  mayHaveBody,
  type Reply,
  requestBodyWatch,
  requestToApp,
  responseWatch,
  upstreamFailed,
} from './forwarding.js';
import { downstreamResponseHeaders } from './headers.js';
import { relay } from './relay.js';
import { startResponseTimer } from './response-timer.js';

export function forwardH1(
  ctx: ForwardContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  target: ForwardTarget,
  reply: Reply,
  ex: ExchangeProgress,
): void {
  const { limits } = ctx;
  const upstreamReq = requestToApp(ctx, target);
  logAppConnection(ctx, upstreamReq, ex.id);
  let timedOut = false;
  let stalled = false;
  const timer = startResponseTimer(upstreamReq, limits.upstreamTimeoutMs, () => {
    timedOut = true;
    upstreamReq.destroy(new Error(`the app sent no response headers within ${limits.upstreamTimeoutMs} ms`));
  });
  const fail = (err: Error) => {
    timer.clear();
    if (stalled) return;
    ex.fail(timedOut ? 'upstream_timeout' : 'upstream_error');
    upstreamFailed(
      ctx,
      timedOut ? 'upstream_timeout' : 'upstream_unreachable',
      res.headersSent,
      reply,
      () => res.destroy(err),
      err,
    );
  };
  upstreamReq.on('response', (upstreamRes) => {
    timer.clear();
    ex.reached();
    const headers = downstreamResponseHeaders(upstreamRes.rawHeaders);
    if (ctx.draining()) headers.push('connection', 'close');
    try {
      // Never the app's reason phrase: Node's parser accepts bytes that writeHead refuses (a crash).
      res.writeHead(upstreamRes.statusCode ?? 502, headers);
    } catch (err) {
      upstreamReq.destroy();
      fail(err as Error);
      return;
    }
    relay(
      upstreamRes,
      res,
      (_err, side) => ex.fail(side === 'source' ? 'upstream_error' : 'caller_reset'),
      responseWatch(ctx, req.socket, () => {
        ex.fail('caller_timeout');
        upstreamRes.destroy();
        res.destroy();
      }),
      (chunk) => (ex.bytesOut += chunk.length),
    );
  });
  upstreamReq.on('error', fail);
  relay(
    req,
    upstreamReq,
    (err) => {
      if (err && !upstreamReq.destroyed) fail(err);
    },
    // A request without a body (most of them) needs no watch: no timer per request.
    bodyArrived(req)
      ? undefined
      : requestBodyWatch(ctx, req.socket, req.headers['content-type'], (reason) => {
          stalled = true;
          ex.fail('caller_timeout');
          timer.clear();
          upstreamReq.destroy();
          if (res.headersSent) res.destroy();
          else reply(answer(408, reason));
        }),
    mayHaveBody(req) ? (chunk) => (ex.bytesIn += chunk.length) : undefined,
  );
  res.on('close', () => {
    timer.clear();
    if (!res.writableFinished) upstreamReq.destroy();
  });
}
