// The HTTPS front of the injector: POST /inject (pods that ask by annotation) and POST /inject-namespace
// (pods of a namespace that opted in), GET /healthz and /readyz for kubelet. Bounded: request bodies
// (413), large bodies held at once (503), header size, handshake and whole-request time, connection count;
// anything else is 404/405/415.
import { constants } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { closeNow, listen } from '../listener.js';
import type { Logger } from '../log.js';
import { admissionResponse, parseAdmissionReview } from './admission-review.js';
import { decideInjection } from './inject.js';
import type { SidecarTemplate } from './options.js';
import type { CertificatePair } from './webhook-certificate.js';

/** A Pod in an AdmissionReview is a few KiB; etcd refuses objects over 1.5 MiB, and a review holds one. */
export const MAX_REVIEW_BYTES = 2 * 1024 * 1024;
const MAX_HEADER_BYTES = 16 * 1024;
/** The API server sends one review per connection at a time; 256 is far more than two replicas of it need. */
const MAX_CONNECTIONS = 256;
/**
 * Bodies held at once: any client in the cluster network can reach the webhook, and 80 of them sending 2 MiB
 * bodies slowly grew it past its memory limit (a review, under the chart's 128Mi: OOM-killed, and pod creation
 * stopped with it). A body up to SMALL_BODY_BYTES (every real pod) is read as it comes; larger ones share
 * LARGE_BODIES_BYTES, and one that would pass it is answered 503 at once, so small reviews go on being served.
 */
export const SMALL_BODY_BYTES = 64 * 1024;
export const LARGE_BODIES_BYTES = 8 * 1024 * 1024;

/** The bytes of large bodies held at once (LARGE_BODIES_BYTES). */
class LargeBodies {
  private held = 0;

  /** Takes `n` bytes if they fit; each taken byte is given back by `give`. */
  take(n: number): boolean {
    if (this.held + n > LARGE_BODIES_BYTES) return false;
    this.held += n;
    return true;
  }

  give(n: number): void {
    this.held -= n;
  }
}

/** The documented paths: which one the MutatingWebhookConfiguration calls says how the pod opted in. */
export const REVIEW_PATHS: Readonly<Record<string, { namespaceOptIn: boolean }>> = {
  '/inject': { namespaceOptIn: false },
  '/inject-namespace': { namespaceOptIn: true },
};
const HEALTH_PATHS = ['/healthz', '/readyz'];

export interface WebhookServerOptions {
  host: string;
  port: number;
  certificate: CertificatePair;
  requestTimeoutMs: number;
  template: SidecarTemplate;
  log: Logger;
}

function sendJson(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** How long a connection refused with 413 still reads (and drops) what its client sends. */
const LINGER_MS = 2000;

/** Why a body was not read (the request has been answered). */
type BodyRefusal = { status: 413; reason: 'payload_too_large' } | { status: 503; reason: 'too_many_large_bodies' };

/**
 * Reads the body up to `limit` bytes; past it, answers 413, and when a large body does not fit in `large`, 503.
 * What it takes of `large` is given back when the exchange is over.
 */
function readBody(
  req: IncomingMessage,
  res: ServerResponse,
  limit: number,
  large: LargeBodies,
): Promise<Buffer | BodyRefusal> {
  return new Promise((resolve, reject) => {
    const refuse = (refusal: BodyRefusal, body: object) => {
      // A lingering close, as nginx does: our side closes once the answer is out, but what the client still
      // sends is read and dropped for LINGER_MS before the socket goes. Closing at once would make our kernel
      // answer those bytes with a reset, which can destroy the answer before the client has read it. Not after a
      // 503: it is for too many large bodies at once, and reading on what they send would take in as much again
      // (300 such clients: 512 MB read and dropped in a second); the connection goes as soon as the answer is out.
      const socket = req.socket;
      const busy = refusal.status === 503;
      socket.destroySoon = busy
        ? () => socket.destroy()
        : () => {
            socket.end();
            setTimeout(() => socket.destroy(), LINGER_MS).unref();
          };
      req.removeAllListeners('data');
      sendJson(res, refusal.status, body, { connection: 'close', ...(busy ? { 'retry-after': '1' } : {}) });
      req.resume();
      resolve(refusal);
    };
    const tooLarge = () =>
      refuse({ status: 413, reason: 'payload_too_large' }, { error: 'payload_too_large', limit_bytes: limit });
    const busy = () => refuse({ status: 503, reason: 'too_many_large_bodies' }, { error: 'too_many_large_bodies' });
    let taken = 0;
    res.once('close', () => large.give(taken));
    const take = (n: number) => {
      if (!large.take(n)) return false;
      taken += n;
      return true;
    };
    const announced = Number(req.headers['content-length'] ?? 0);
    if (announced > limit) return tooLarge();
    // An announced large body takes its share before a byte of it is read.
    if (announced > SMALL_BODY_BYTES && !take(announced)) return busy();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return tooLarge();
      // A body without a length takes its share (all of it) as it grows past the small size.
      if (size > SMALL_BODY_BYTES && size > taken && !take(size - taken)) return busy();
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * TLS 1.2 renegotiation refused, as on the sidecar's own listeners (src/proxy/server-tls.ts): anything in the
 * cluster network can reach the webhook, and must not make it redo handshakes at will on one connection. Set on
 * every context, the reloaded ones too (a context replaced without it would allow it again).
 */
const NO_RENEGOTIATION = constants.SSL_OP_NO_RENEGOTIATION;

/** The TLS context of the listener, at start and at each reload: one set of options, so they cannot drift apart. */
function servingContext(pair: CertificatePair) {
  return { cert: pair.certPem, key: pair.keyPem, minVersion: 'TLSv1.2', secureOptions: NO_RENEGOTIATION } as const;
}

export class WebhookServer {
  private constructor(private readonly server: Server) {}

  static async start(options: WebhookServerOptions): Promise<WebhookServer> {
    const { log } = options;
    const largeBodies = new LargeBodies();
    const server = createServer(
      {
        ...servingContext(options.certificate),
        handshakeTimeout: options.requestTimeoutMs,
        maxHeaderSize: MAX_HEADER_BYTES,
        requestTimeout: options.requestTimeoutMs,
        headersTimeout: options.requestTimeoutMs,
        // The API server keeps connections to webhooks alive; an idle one is closed after this.
        keepAliveTimeout: 30_000,
        // How often the two timeouts above are enforced (Node's default, 30 s, would let a slow client
        // hold a connection for that long whatever the timeout).
        connectionsCheckingInterval: Math.min(1000, options.requestTimeoutMs),
      },
      (req, res) => {
        handle(req, res, options, largeBodies).catch((err: unknown) => {
          log.error({ event: 'internal_error', err }, 'admission request failed');
          if (!res.headersSent) sendJson(res, 500, { error: 'internal_error' });
          else res.destroy();
        });
      },
    );
    server.maxConnections = MAX_CONNECTIONS;
    server.on('tlsClientError', (err, socket) => {
      log.debug({ event: 'webhook_bad_request', reason: 'tls', error: err.message, remote: socket.remoteAddress });
    });
    await listen(server, options.host, options.port, '--listen');
    return new WebhookServer(server);
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** New connections use the new pair; open ones finish on the old. */
  setCertificate(pair: CertificatePair): void {
    this.server.setSecureContext(servingContext(pair));
  }

  close(): Promise<void> {
    return closeNow(this.server);
  }
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: WebhookServerOptions,
  largeBodies: LargeBodies,
): Promise<void> {
  const { log } = options;
  const path = (req.url ?? '/').split('?', 1)[0];
  const refuse = (status: number, error: string, headers: Record<string, string> = {}) => {
    log.info({ event: 'webhook_bad_request', status, reason: error, method: req.method, path: path.slice(0, 100) });
    req.resume();
    sendJson(res, status, { error }, headers);
  };
  if (HEALTH_PATHS.includes(path)) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(405, 'method_not_allowed', { allow: 'GET, HEAD' });
    return sendJson(res, 200, path === '/healthz' ? { alive: true } : { ready: true });
  }
  const route = Object.hasOwn(REVIEW_PATHS, path) ? REVIEW_PATHS[path] : undefined;
  if (!route) return refuse(404, 'not_found');
  if (req.method !== 'POST') return refuse(405, 'method_not_allowed', { allow: 'POST' });
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0].trim().toLowerCase();
  if (type !== 'application/json') return refuse(415, 'unsupported_media_type');

  const body = await readBody(req, res, MAX_REVIEW_BYTES, largeBodies);
  if (!Buffer.isBuffer(body)) {
    log.info({ event: 'webhook_bad_request', status: body.status, reason: body.reason, path });
    return;
  }
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return refuse(400, 'malformed_json');
  }
  const request = parseAdmissionReview(json);
  if ('malformed' in request) return refuse(400, request.malformed);
  if (!request.isPodCreate) return sendJson(res, 200, admissionResponse(request.uid, undefined));

  const decision = decideInjection(request.pod, request.namespace, route.namespaceOptIn, options.template);
  const pod = request.pod.metadata?.name ?? `${request.pod.metadata?.generateName ?? ''}*`;
  const fields = { uid: request.uid, namespace: request.namespace, pod: String(pod).slice(0, 253) };
  if (decision.kind === 'patch') {
    log.info(
      { event: 'pod_injected', ...fields, mode: decision.settings.mode, auth: decision.settings.authMode },
      'sidecar injected',
    );
  } else if (decision.kind === 'deny') {
    log.warn({ event: 'pod_denied', ...fields, reason: decision.message }, 'pod denied: bad annotations');
  } else {
    // Most pods of the cluster pass by without asking for anything: not worth an info line each.
    const level = decision.reason === 'not_requested' || decision.reason === 'opted_out' ? 'debug' : 'info';
    log[level]({ event: 'pod_skipped', ...fields, reason: decision.reason }, 'pod left unchanged');
  }
  sendJson(res, 200, admissionResponse(request.uid, decision));
}
