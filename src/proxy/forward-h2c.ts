// An admitted request, from an HTTP/1.1 or HTTP/2 caller, to an app that speaks cleartext HTTP/2
// (`--upstream-protocol h2c`, for gRPC): streams both ways, trailers and trailers-only responses included
// for HTTP/2 callers, under the same watches and --upstream-timeout as the other forwarders.
import { cancelStream } from './cancel-stream.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as http2 from 'node:http2';
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
import { relay } from './relay.js';
import { startResponseTimer } from './response-timer.js';

/** The caller's side: an HTTP/2 stream, or an HTTP/1.1 response and the request body it answers. */
export type H2cCaller = { h2: http2.ServerHttp2Stream } | { res: ServerResponse; body: IncomingMessage };

export function forwardToH2c(
  ctx: ForwardContext,
  caller: H2cCaller,
  socket: Socket,
  target: ForwardTarget,
  reply: Reply,
  reached: (status: number) => void,
): void {
  const { upstream, limits } = ctx;
  const { headers, host } = h1FieldsToH2(target.fields);
  // gRPC requires `te: trailers` (the one TE value HTTP/2 allows); it went with the hop-by-hop fields, and
  // servers such as grpc-java refuse a call without it.
  if (isGrpc(contentTypeOf(target.fields))) headers.te = 'trailers';
  let up: http2.ClientHttp2Stream;
  try {
    up = (ctx.h2c as NonNullable<ForwardContext['h2c']>).request(
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
    upstreamFailed(ctx, 'upstream_unreachable', false, reply, () => {});
    return;
  }
  const h2 = 'h2' in caller ? caller.h2 : undefined;
  const res = 'res' in caller ? caller.res : undefined;
  const sent = () => (h2 ? h2.headersSent : (res as ServerResponse).headersSent);
  const abort = () => (h2 ? h2.close(http2.constants.NGHTTP2_INTERNAL_ERROR) : (res as ServerResponse).destroy());
  let stalled = false;
  const timer = startResponseTimer(up, limits.upstreamTimeoutMs, () => {
    cancelStream(up);
    upstreamFailed(ctx, 'upstream_timeout', sent(), reply, abort);
  });
  const cut = () => {
    cancelStream(up);
    abort();
  };
  up.on('response', (responseHeaders) => {
    timer.clear();
    const status = Number(responseHeaders[':status'] ?? 502);
    reached(status);
    if (h2) {
      if (h2.destroyed) return;
      if (!forwardH2Response(up, h2, responseHeaders, responseWatch(ctx, socket, cut)))
        reply(answer(502, 'bad_response'));
      return;
    }
    const out = res as ServerResponse;
    try {
      out.writeHead(status, h2ResponseToH1(responseHeaders));
    } catch {
      cancelStream(up);
      reply(answer(502, 'bad_response'));
      return;
    }
    // HTTP/1.1 callers get the body; trailers need chunked encoding and a client that reads them.
    relay(up, out, undefined, responseWatch(ctx, socket, cut));
  });
  up.on('error', () => {
    timer.clear();
    if (stalled) return;
    upstreamFailed(ctx, 'upstream_unreachable', sent(), reply, abort);
  });
  if (!target.endStream) {
    relay(
      h2 ?? (caller as { body: IncomingMessage }).body,
      up,
      undefined,
      requestBodyWatch(ctx, socket, contentTypeOf(target.fields), (reason) => {
        stalled = true;
        timer.clear();
        cancelStream(up);
        if (sent()) abort();
        else reply(answer(408, reason));
      }),
    );
  }
  (h2 ?? (res as ServerResponse)).once('close', () => {
    timer.clear();
    cancelStream(up);
  });
}
