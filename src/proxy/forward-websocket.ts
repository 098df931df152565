// An admitted WebSocket upgrade: the upgrade request to the app with the fields set for it, the app's
// answer relayed, then bytes both ways until either side closes or --tunnel-idle-timeout passes with no
// byte either way. Any other upgrade is refused: after a switch of protocol nothing could strip headers.
// The exchange learns the status the caller got and, at the tunnel's end, the bytes each way through it.
import type * as http from 'node:http';
import type { Socket } from 'node:net';
import { nodeHttp } from '../node-http.js';
import { pipeline } from 'node:stream';
import type { ExchangeProgress } from './access-log.js';
import { type Answer, answer, writeAnswerRaw } from './answers.js';
import { endLingering } from './lingering-close.js';
import { downstreamResponseHeaders } from './headers.js';
import {
  type ForwardContext,
  type ForwardTarget,
  logAppConnection,
  logStall,
  requestToApp,
  upstreamFailed,
} from './forwarding.js';

/**
 * Room for the 'close' listeners a pipeline adds to the caller's socket: six for the tunnel's, five for a declined
 * upgrade's (Node 20), beside up to six of the socket's own (the TLS socket's, the connection's accounting, the
 * tunnel set, the access line). Each is one per mechanism, not one per byte or frame: without the room, Node prints
 * a MaxListenersExceededWarning ("possible memory leak") for every tunnel.
 */
const PIPELINE_LISTENERS = 8;

/** Whether this upgrade request asks for WebSocket, the only protocol we tunnel. */
export function isWebSocketUpgrade(req: Pick<http.IncomingMessage, 'method' | 'headers'>): boolean {
  return req.method === 'GET' && req.headers.upgrade?.trim().toLowerCase() === 'websocket';
}

/**
 * The head the caller gets for the app's answer to an upgrade, with our reason phrase (never the app's: it may
 * hold bytes a client chokes on). Hop-by-hop fields, and those the app's Connection lists, are the app's hop's, not
 * the caller's (RFC 9110 §7.6.1): a 101 loses them as any answer does, and says `upgrade: websocket` and
 * `connection: upgrade` itself (the switch, as nginx and Envoy relay it; the app's was checked to be that one); it
 * never carries a Content-Length (§8.6). Any other answer is a declined upgrade: its body reaches the caller as
 * node:http read it (de-chunked), delimited by the close, so `connection: close` says so.
 */
function responseHead(res: http.IncomingMessage): string {
  const status = res.statusCode ?? 502;
  let text = `HTTP/1.1 ${status} ${nodeHttp.STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  const fields = downstreamResponseHeaders(res.rawHeaders);
  for (let i = 0; i < fields.length; i += 2) {
    if (status === 101 && fields[i].toLowerCase() === 'content-length') continue;
    text += `${fields[i]}: ${fields[i + 1]}\r\n`;
  }
  return status === 101
    ? `${text}upgrade: websocket\r\nconnection: upgrade\r\n\r\n`
    : `${text}connection: close\r\n\r\n`;
}

/**
 * The app switched to WebSocket, the one protocol asked of it: one Upgrade field, naming `websocket`. A switch to
 * anything else (h2c among them) would carry requests past header stripping, as a caller's other upgrades would.
 */
function switchesToWebSocket(res: http.IncomingMessage): boolean {
  const raw = res.rawHeaders;
  let named: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() !== 'upgrade') continue;
    if (named !== undefined) return false;
    named = raw[i + 1].trim().toLowerCase();
  }
  return named === 'websocket';
}

/**
 * `tunnels`: the caller's socket is added while the tunnel lasts (the HTTP server no longer tracks it).
 * `ex`: told the status written to the caller, and when its head has been written (after which what the
 * caller's socket writes is the tunnel's, or a declined upgrade's body).
 */
export function tunnelWebSocket(
  ctx: ForwardContext,
  socket: Socket,
  head: Buffer,
  target: ForwardTarget,
  tunnels: Set<Socket>,
  ex: ExchangeProgress,
): void {
  const { limits } = ctx;
  socket.setMaxListeners(socket.getMaxListeners() + PIPELINE_LISTENERS);
  tunnels.add(socket);
  socket.once('close', () => tunnels.delete(socket));
  const upstreamReq = requestToApp(ctx, target, false);
  logAppConnection(ctx, upstreamReq, ex.id);
  // One answer of ours at most, and none once the app's head has been written or the caller is gone.
  let answered = false;
  const answerOurselves = (a: Answer) => {
    if (answered) return;
    answered = true;
    ex.status = a.status;
    ex.headWritten(writeAnswerRaw(socket, a));
  };
  /** The app failed before its answer: counted and logged as for any request (upstream_error), then our 502/504. */
  const appFailed = (reason: 'upstream_timeout' | 'upstream_unreachable', detail: Error) => {
    ex.fail(reason === 'upstream_timeout' ? 'upstream_timeout' : 'upstream_error');
    if (answered) return; // our 504 just before, or the app's declined head: the outcome alone
    upstreamFailed(ctx, reason, false, answerOurselves, () => socket.destroy(), detail);
  };
  /** The app answered with a 101 we will not relay: counted as the HTTP/2 path counts a response it cannot carry. */
  const badSwitch = () => {
    ex.fail('upstream_error');
    ctx.metrics.upstreamError('upstream_unreachable');
    answerOurselves(answer(502, 'bad_response'));
  };
  const timer = setTimeout(() => {
    appFailed(
      'upstream_timeout',
      new Error(`the app sent no answer to the upgrade within ${limits.upstreamTimeoutMs} ms`),
    );
    upstreamReq.destroy();
  }, limits.upstreamTimeoutMs);
  upstreamReq.once('upgrade', () => clearTimeout(timer));
  upstreamReq.once('response', () => clearTimeout(timer));
  upstreamReq.once('close', () => clearTimeout(timer));
  const writeHead = (res: http.IncomingMessage) => {
    answered = true;
    // Written as node:http read it (latin1): the app's field bytes reach the caller as they were, not re-encoded.
    socket.write(responseHead(res), 'latin1');
    ex.reached();
    ex.status = res.statusCode ?? 0;
    ex.headWritten();
  };
  upstreamReq.on('upgrade', (res, upstreamSocket, upstreamHead) => {
    if (!switchesToWebSocket(res)) {
      upstreamSocket.destroy();
      badSwitch();
      return;
    }
    writeHead(res);
    if (upstreamHead.length > 0) socket.write(upstreamHead);
    if (head.length > 0) upstreamSocket.write(head);
    pipeline(upstreamSocket, socket, upstreamSocket, () => {
      upstreamSocket.destroy();
      socket.destroy();
    });
    // `--tunnel-idle-timeout`: no byte either way (the caller's socket sees both directions).
    socket.setTimeout(limits.tunnelIdleTimeoutMs, () => {
      ex.fail('idle_timeout');
      logStall(ctx, 'tunnel_idle_timeout', socket);
      upstreamSocket.destroy();
      socket.destroy();
    });
  });
  upstreamReq.on('response', (res) => {
    if ((res.statusCode ?? 0) < 200) {
      // A 101 that is no switch (no Upgrade, or no Connection: upgrade): relayed, it would pass for a tunnel's start.
      res.destroy();
      badSwitch();
      return;
    }
    // The app declined the upgrade: relay its answer and close, lingering for frames the caller sent behind it.
    writeHead(res);
    pipeline(res, socket, (err) => (err ? socket.destroy() : endLingering(socket)));
  });
  upstreamReq.on('error', (err) => appFailed('upstream_unreachable', err));
  // The caller gone (reset, or closed before any answer): the app request goes too, and its failure that follows is
  // the caller's doing, not counted against the app.
  const callerGone = () => {
    if (!answered) {
      answered = true;
      clearTimeout(timer);
    }
    ex.fail('caller_reset');
    upstreamReq.destroy();
  };
  socket.on('error', callerGone);
  socket.once('close', () => {
    if (!answered) callerGone();
  });
  upstreamReq.end();
}
