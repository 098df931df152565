// A local OAuth 2.0 token endpoint for tests: real HTTP on loopback, or HTTPS that can require a client
// certificate (RFC 8705). It records every token request (its form, Basic credentials, client certificate)
// and answers as the test scripts: a token, a refusal, a failure, an expired token, or no answer at all.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

export interface SeenTokenRequest {
  method: string;
  path: string;
  contentType: string | undefined;
  form: URLSearchParams;
  authorization: string | undefined;
  /** client_secret_basic, decoded (RFC 6749 §2.3.1: each part form-decoded after base64). */
  basic: { clientId: string; secret: string } | undefined;
  /** The URI SAN of the client certificate, when one was presented. */
  clientCertificateUri: string | undefined;
}

/** A status and a JSON body; `hang`: no answer until the endpoint closes (a deadline's test). */
export type TokenAnswer = { status: number; body: unknown } | 'hang';

export interface OAuthTokenEndpoint {
  /** The token endpoint's URL (`/token`). */
  url: string;
  port: number;
  requests: SeenTokenRequest[];
  /** How each request is answered; by default a fresh opaque Bearer token for an hour (`at-1`, `at-2`...). */
  answer: (request: SeenTokenRequest, n: number) => TokenAnswer | Promise<TokenAnswer>;
  /** Resolves with the next request, once recorded (before it is answered). */
  nextRequest(): Promise<SeenTokenRequest>;
  close(): Promise<void>;
}

/** A successful answer (RFC 6749 §5.1). */
export function issued(token: string, extra: Record<string, unknown> = {}): TokenAnswer {
  return { status: 200, body: { access_token: token, token_type: 'Bearer', expires_in: 3600, ...extra } };
}

/** An error answer (RFC 6749 §5.2). */
export function refused(error = 'invalid_request', status = 400): TokenAnswer {
  return { status, body: { error, error_description: 'refused by the test' } };
}

function decodeBasic(authorization: string | undefined): SeenTokenRequest['basic'] {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(authorization ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  const decode = (part: string) => new URLSearchParams(`v=${part}`).get('v') ?? '';
  return { clientId: decode(text.slice(0, colon)), secret: decode(text.slice(colon + 1)) };
}

function certificateUri(req: IncomingMessage): string | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  const san = socket.getPeerCertificate?.()?.subjectaltname;
  return san ? /URI:([^,\s]+)/.exec(san)?.[1] : undefined;
}

/**
 * Starts the endpoint on 127.0.0.1. `tls`: HTTPS with this certificate; with `clientCa`, a client
 * certificate issued by it is required.
 */
export async function startOAuthTokenEndpoint(
  options: { tls?: { cert: string; key: string; clientCa?: string } } = {},
): Promise<OAuthTokenEndpoint> {
  const requests: SeenTokenRequest[] = [];
  let waiters: ((r: SeenTokenRequest) => void)[] = [];
  const endpoint: OAuthTokenEndpoint = {
    url: '',
    port: 0,
    requests,
    answer: (_request, n) => issued(`at-${n}`),
    nextRequest: () => new Promise((resolve) => waiters.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      const seen: SeenTokenRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        contentType: req.headers['content-type'],
        form: new URLSearchParams(body),
        authorization: req.headers.authorization,
        basic: decodeBasic(req.headers.authorization),
        clientCertificateUri: certificateUri(req),
      };
      requests.push(seen);
      const woken = waiters;
      waiters = [];
      for (const w of woken) w(seen);
      void Promise.resolve(endpoint.answer(seen, requests.length)).then((answer) => {
        if (answer === 'hang') return;
        res.writeHead(answer.status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(answer.body));
      });
    });
  };
  const tls = options.tls;
  const server: Server = tls
    ? createHttpsServer(
        {
          cert: tls.cert,
          key: tls.key,
          ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true } : {}),
        },
        handle,
      )
    : createHttpServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint.port = (server.address() as AddressInfo).port;
  // HTTPS by name (the certificate's), HTTP by the loopback address the sidecar insists on.
  endpoint.url = tls ? `https://localhost:${endpoint.port}/token` : `http://127.0.0.1:${endpoint.port}/token`;
  return endpoint;
}
