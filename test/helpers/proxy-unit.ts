// What the unit tests of src/proxy/ share: counting metrics, limits, a ForwardContext to a real app on
// loopback, a recording app, and small event waits (bounded: every wait has a deadline).
import { once } from 'node:events';
import * as http from 'node:http';
import type * as http2 from 'node:http2';
import { connect as connectH2, createServer as createH2Server } from 'node:http2';
import type { AddressInfo, Server, Socket } from 'node:net';
import type * as net from 'node:net';
import { expect } from 'vitest';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { writeAnswerH2 } from '../../src/proxy/answers.js';
import { type ForwardContext, type ForwardTarget, originOf, type Reply } from '../../src/proxy/forwarding.js';
import { h2RequestToH1 } from '../../src/proxy/http2-headers.js';
import { H2cUpstream } from '../../src/proxy/h2c-upstream.js';
import { type HeaderPolicy, protectedNames, upstreamRequestHeaders } from '../../src/proxy/headers.js';
import type { InboundLimits } from '../../src/proxy/limits.js';
import type { ProxyMetrics } from '../../src/proxy/proxy-metrics.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { capturingLogger } from './sidecar.js';

export { closedPort } from './tcp-echo-app.js';

export type MetricCall = [name: keyof ProxyMetrics, ...args: unknown[]];

/** A ProxyMetrics that records every call, in order. */
export function countingMetrics(): ProxyMetrics & { calls: MetricCall[]; count(...call: MetricCall): number } {
  const calls: MetricCall[] = [];
  const record =
    (name: keyof ProxyMetrics) =>
    (...args: unknown[]) => {
      calls.push([name, ...args]);
    };
  return {
    calls,
    count: (...call) => calls.filter((c) => c.length >= call.length && call.every((v, i) => c[i] === v)).length,
    handshake: record('handshake'),
    decision: record('decision'),
    request: record('request'),
    connectionOpened: record('connectionOpened'),
    connectionClosed: record('connectionClosed'),
    connectionDropped: record('connectionDropped'),
    upstreamError: record('upstreamError'),
  };
}

/** The README's defaults; tests shorten the one timeout that is their subject. */
export function limits(overrides: Partial<InboundLimits> = {}): InboundLimits {
  return {
    handshakeTimeoutMs: 10_000,
    headerTimeoutMs: 10_000,
    idleTimeoutMs: 60_000,
    maxHeaderBytes: 16_384,
    maxHeaderCount: 100,
    maxConnections: 100,
    upstreamTimeoutMs: 60_000,
    requestBodyTimeoutMs: 60_000,
    requestBodyMinRate: 240,
    responseWriteTimeoutMs: 60_000,
    tunnelIdleTimeoutMs: 300_000,
    ...overrides,
  };
}

export const SELF_ID = 'spiffe://example.org/ns/prod/sa/server';
export const CALLER: PeerIdentity = { method: 'api-key', name: 'partner' };

export const HEADER_POLICY: HeaderPolicy = {
  identityHeaders: ['x-spiffe-id'],
  xfcc: true,
  apiKeys: true,
  self: () => parseSpiffeId(SELF_ID),
};

export type TestContext = ForwardContext & {
  logs: Record<string, unknown>[];
  metrics: ReturnType<typeof countingMetrics>;
  isDraining: { value: boolean };
  close(): void;
};

/** A ForwardContext to `upstream` (an http: origin), with a capturing logger and counting metrics. */
export function forwardContext(
  upstream: string,
  overrides: Partial<InboundLimits> = {},
  protocol: 'h1' | 'h2c' = 'h1',
): TestContext {
  const { log, logs } = capturingLogger();
  const url = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
  const h2c = protocol === 'h2c' ? new H2cUpstream(url) : undefined;
  const isDraining = { value: false };
  return {
    upstream: url,
    agent,
    h2c,
    limits: limits(overrides),
    headers: HEADER_POLICY,
    tls: false,
    log,
    logs,
    metrics: countingMetrics(),
    isDraining,
    draining: () => isDraining.value,
    close() {
      agent.destroy();
      h2c?.close();
    },
  };
}

/** The request as inbound.ts builds it for the app: identity first, the caller's fields stripped. */
/** What targetFor reads of a request. */
export type TargetHead = { method?: string; url?: string; rawHeaders: readonly string[]; socket: Socket };

export function targetFor(
  ctx: ForwardContext,
  head: TargetHead,
  endStream: boolean,
  upgrade?: 'websocket',
): ForwardTarget {
  const fields = upstreamRequestHeaders(
    head.rawHeaders,
    { identity: CALLER },
    ctx.headers,
    protectedNames(ctx.headers),
    originOf(ctx, head.socket),
    upgrade,
  );
  return { method: head.method ?? 'GET', url: head.url ?? '/', fields, endStream };
}

export async function listenOn<S extends Server | http2.Http2Server>(server: S): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/**
 * An h2c server handing each stream to `forward` as inbound.ts does (its head in HTTP/1.1 field form, the
 * session's socket, our answers), and a client session to it.
 */
export async function startH2Front(
  forward: (stream: http2.ServerHttp2Stream, socket: Socket, head: TargetHead, reply: Reply) => void,
): Promise<{ server: http2.Http2Server; session: http2.ClientHttp2Session }> {
  const server = createH2Server();
  server.on(
    'stream',
    (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      stream.on('error', () => {});
      const socket = stream.session?.socket as Socket;
      const head = { method: headers[':method'], url: headers[':path'], rawHeaders: h2RequestToH1(rawHeaders), socket };
      forward(stream, socket, head, (a) => writeAnswerH2(stream, a));
    },
  );
  const port = await listenOn(server);
  const session = connectH2(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  await once(session, 'connect');
  return { server, session };
}

/** Closes a server and every connection it holds. */
export async function closeServer(server: http.Server | net.Server | http2.Http2Server | undefined): Promise<void> {
  if (!server?.listening) return;
  if (server instanceof http.Server) server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Tracks every socket of a server, so that a test can end them all. */
export function trackSockets(server: net.Server | http2.Http2Server): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return sockets;
}

/** Waits (bounded) for a log line carrying every field of `match`. */
export async function logLine(
  logs: readonly Record<string, unknown>[],
  match: Record<string, unknown>,
  timeout = 5000,
): Promise<Record<string, unknown>> {
  let found: Record<string, unknown> | undefined;
  await expect
    .poll(() => (found = logs.find((l) => Object.entries(match).every(([k, v]) => l[k] === v))), {
      timeout,
      interval: 10,
    })
    .toBeDefined();
  return found!;
}

export interface Exchange {
  status: number;
  statusMessage: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** One HTTP/1.1 request with a fresh connection; resolves with the whole response. */
export function h1Request(
  port: number,
  options: http.RequestOptions & { body?: Buffer | string } = {},
): Promise<Exchange> {
  const { body, ...rest } = options;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...rest }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          statusMessage: res.statusMessage ?? '',
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Everything a raw socket receives until it closes (bounded by `limit` bytes). */
export function readToClose(socket: Socket, limit = 64 * 1024 * 1024): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    socket.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
      else socket.destroy();
    });
    socket.on('error', () => {});
    socket.once('close', () => resolve(Buffer.concat(chunks)));
    socket.resume();
  });
}

/** The JSON body of one of our answers. */
export function answerJson(body: Buffer | string): { error: string; reason: string } {
  return JSON.parse(body.toString()) as { error: string; reason: string };
}

export interface SeenRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  body: Buffer;
}

/**
 * An HTTP/1.1 app that records each request once its body has arrived (and the URL of each response cut
 * before its end), answering with `respond` (default: 201 and a line naming the request).
 */
export async function startRecordingApp(
  respond: (req: http.IncomingMessage, res: http.ServerResponse) => void = (req, res) => {
    req.on('end', () => res.writeHead(201, { 'content-type': 'text/plain' }).end(`got ${req.method} ${req.url}`));
    req.resume();
  },
): Promise<{ server: http.Server; port: number; seen: SeenRequest[]; aborted: string[] }> {
  const seen: SeenRequest[] = [];
  const aborted: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      seen.push({ method: req.method!, url: req.url!, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) }),
    );
    res.on('close', () => {
      if (!res.writableFinished) aborted.push(req.url!);
    });
    respond(req, res);
  });
  return { server, port: await listenOn(server), seen, aborted };
}

export interface H2Exchange {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
  rstCode: number | undefined;
}

/** Collects what an HTTP/2 client stream receives until it closes. */
export function h2Collect(stream: http2.ClientHttp2Stream): Promise<H2Exchange> {
  return new Promise((resolve) => {
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => {});
    stream.on('close', () => resolve({ headers, trailers, body: Buffer.concat(chunks), rstCode: stream.rstCode }));
  });
}

/** The field names of a flat list, lower-cased. */
export function namesOf(raw: readonly string[]): string[] {
  return raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}
