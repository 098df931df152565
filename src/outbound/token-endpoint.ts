// One request to an OAuth 2.0 token endpoint (RFC 6749 §3.2): the form, the client's authentication
// (client_secret_basic, an RFC 7523 JWT-SVID assertion, or our SVID as the RFC 8705 TLS client certificate),
// a deadline, and the answer judged. Never throws: every failure is an outcome with a bounded `error` code.
import { readFile } from 'node:fs/promises';
import { nodeHttp } from '../node-http.js';
import * as https from 'node:https';
import { rootCertificates } from 'node:tls';
import { decodeJwt } from 'jose';

/** How the sidecar proves to the token endpoint which client it is. */
export type ClientAuthentication =
  | { readonly method: 'secret'; readonly clientId: string; readonly secretFile: string }
  | {
      readonly method: 'private-key-jwt';
      readonly clientId: string;
      /** A JWT-SVID for `audience` (the token endpoint's URL, RFC 7523 §3). */
      readonly assertion: (audience: string) => Promise<string>;
    }
  | {
      readonly method: 'mtls';
      readonly clientId: string;
      /** Our current SVID (chain and key, PEM), or undefined while we have none. */
      readonly certificate: () => { cert: string; key: string } | undefined;
    };

export interface TokenEndpoint {
  readonly url: URL;
  readonly client: ClientAuthentication;
  /** Extra CA certificates (PEM) an https endpoint may chain to, besides the system roots. */
  readonly ca?: readonly string[];
  /** The whole request, connection to the last byte of the answer. */
  readonly timeoutMs: number;
}

/**
 * A token, or why there is none. `refused`: the endpoint turned the grant itself down (RFC 6749 §5.2), not
 * our client authentication or its own health. `error`: an OAuth error code, a socket error code,
 * `timeout`, `http_<status>`, or what was wrong with a 200 answer; never a secret or a token.
 */
export type TokenOutcome =
  | { readonly ok: true; readonly accessToken: string; readonly issuedAt: number; readonly expiresAt: number }
  | {
      readonly ok: false;
      readonly refused: boolean;
      readonly status?: number;
      readonly error: string;
      readonly message: string;
    };

/** RFC 8693 §3: the type we ask for, and the only issued type a route can send as a bearer token. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** RFC 7523 §2.2. */
const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** RFC 6750 §2.1 b64token: what may follow `Bearer ` in a header (no space, no line break to inject). */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
/** RFC 6749 §5.2: an error code is printable ASCII without `"` and `\`; bounded so it can label a log line. */
const OAUTH_ERROR = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$/;
/** RFC 6749 §5.1 leaves expires_in optional: without it (and no JWT `exp`), a token is trusted this long. */
const DEFAULT_LIFETIME_MS = 60_000;
/** The longest a token is kept, whatever the endpoint says: a day. */
const MAX_LIFETIME_MS = 24 * 3_600_000;
/** A token answer is a few kilobytes; more is not a token endpoint talking. */
const MAX_ANSWER_BYTES = 64 * 1024;

type Failure = Extract<TokenOutcome, { ok: false }>;

function failure(error: string, message: string, status?: number, refused = false): Failure {
  return status === undefined ? { ok: false, refused, error, message } : { ok: false, refused, status, error, message };
}

/** RFC 6749 Appendix B: each part of client_secret_basic is form-encoded before base64 (§2.3.1). */
function formEncode(text: string): string {
  return new URLSearchParams({ v: text }).toString().slice(2);
}

interface Authenticated {
  headers: Record<string, string>;
  form: [string, string][];
  tls: { cert?: string; key?: string };
}

async function authenticate(endpoint: TokenEndpoint): Promise<Authenticated | Failure> {
  const { client } = endpoint;
  if (client.method === 'secret') {
    // Read at each request: a rotated secret (a re-mounted Kubernetes Secret) is used as soon as it lands.
    let secret: string;
    try {
      secret = (await readFile(client.secretFile, 'utf8')).trim();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'read_failed';
      return failure('client_secret_unreadable', `client-secret-file ${client.secretFile}: cannot read it (${code})`);
    }
    if (!secret) return failure('client_secret_unreadable', `client-secret-file ${client.secretFile} is empty`);
    const basic = Buffer.from(`${formEncode(client.clientId)}:${formEncode(secret)}`).toString('base64');
    return { headers: { authorization: `Basic ${basic}` }, form: [], tls: {} };
  }
  if (client.method === 'private-key-jwt') {
    let assertion: string;
    try {
      assertion = await client.assertion(endpoint.url.href);
    } catch (err) {
      return failure('no_client_assertion', `no JWT-SVID to authenticate with: ${(err as Error).message}`);
    }
    return {
      headers: {},
      form: [
        ['client_id', client.clientId],
        ['client_assertion_type', JWT_BEARER_ASSERTION],
        ['client_assertion', assertion],
      ],
      tls: {},
    };
  }
  const certificate = client.certificate();
  if (!certificate) return failure('no_identity', 'no SVID yet to present to the token endpoint');
  // RFC 8705 §2: the certificate authenticates; client_id says which client it is meant to be.
  return { headers: {}, form: [['client_id', client.clientId]], tls: certificate };
}

type Answered = { status: number; text: string } | Failure;

function timedOut(endpoint: TokenEndpoint): Failure {
  return failure('timeout', `no complete answer within ${endpoint.timeoutMs} ms`);
}

function post(endpoint: TokenEndpoint, body: string, auth: Authenticated, signal: AbortSignal): Promise<Answered> {
  const { url } = endpoint;
  const secure = url.protocol === 'https:';
  return new Promise((resolve) => {
    let settled = false;
    const settle = (answered: Answered) => {
      if (settled) return;
      settled = true;
      resolve(answered);
    };
    const req = (secure ? https : nodeHttp).request(
      {
        method: 'POST',
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || (secure ? 443 : 80),
        path: `${url.pathname}${url.search}`,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          ...auth.headers,
        },
        // A connection of its own: a pooled one would go on presenting an SVID that has since rotated.
        agent: false,
        signal,
        ...(secure
          ? {
              ...auth.tls,
              // `ca` replaces Node's roots: the system's are kept, the extra ones added.
              ...(endpoint.ca?.length ? { ca: [...rootCertificates, ...endpoint.ca] } : {}),
              minVersion: 'TLSv1.2' as const,
            }
          : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) {
            settle(failure('bad_response', `the answer is over ${MAX_ANSWER_BYTES} bytes`, res.statusCode));
            req.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => settle({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (err) =>
          settle(signal.aborted ? timedOut(endpoint) : failure('connection_reset', err.message, res.statusCode)),
        );
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) =>
      settle(signal.aborted ? timedOut(endpoint) : failure(err.code ?? 'request_failed', err.message)),
    );
    req.end(body);
  });
}

/** The JWT `exp` of an access token in milliseconds, when it is a JWT that has one (read, not verified). */
export function jwtExpiry(token: string): number | undefined {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** RFC 6749 §5.1 and §5.2 (RFC 8693 §2.2 for an exchange): a token fit to send as Bearer, or why not. */
export function judgeTokenAnswer(status: number, text: string, now: number): TokenOutcome {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    document = undefined;
  }
  const fields =
    typeof document === 'object' && document !== null && !Array.isArray(document)
      ? (document as Record<string, unknown>)
      : undefined;
  if (status === 400 || status === 401) {
    const error = typeof fields?.error === 'string' && OAUTH_ERROR.test(fields.error) ? fields.error : `http_${status}`;
    // 401 is invalid_client with HTTP authentication (§5.2): like unauthorized_client, it is about us (our
    // credentials, our registration), not the grant: the caller's token was not what was turned down.
    const ours = status === 401 || error === 'invalid_client' || error === 'unauthorized_client';
    return failure(error, `the token endpoint answered ${status} ${error}`, status, !ours);
  }
  if (status !== 200) return failure(`http_${status}`, `the token endpoint answered ${status}`, status);
  if (!fields) return failure('bad_response', 'the answer is not a JSON object', status);
  const token = fields.access_token;
  if (typeof token !== 'string' || token === '')
    return failure('no_access_token', 'the answer has no access_token', status);
  if (!B64TOKEN.test(token))
    return failure('bad_access_token', 'the access_token cannot go in a Bearer header', status);
  // §7.1: a token of another type (mac, DPoP, N_A) is not sent with the Bearer scheme. Compared folded (§5.1).
  if (typeof fields.token_type !== 'string' || fields.token_type.toLowerCase() !== 'bearer')
    return failure('not_bearer', `token_type ${JSON.stringify(fields.token_type)} is not Bearer`, status);
  if (fields.issued_token_type !== undefined && fields.issued_token_type !== ACCESS_TOKEN_TYPE)
    return failure('not_an_access_token', 'the issued_token_type is not an access token', status);
  let expiresAt: number | undefined;
  const expiresIn = fields.expires_in;
  if (expiresIn !== undefined) {
    // A number by §5.1; some servers send it as a string of digits.
    const seconds =
      typeof expiresIn === 'number'
        ? expiresIn
        : typeof expiresIn === 'string' && /^-?\d+$/.test(expiresIn)
          ? Number(expiresIn)
          : NaN;
    if (!Number.isFinite(seconds)) return failure('bad_response', 'expires_in is not a number', status);
    if (seconds <= 0) return failure('token_expired', 'the access token has already expired (expires_in)', status);
    expiresAt = now + seconds * 1000;
  }
  const exp = jwtExpiry(token);
  if (exp !== undefined && exp <= now)
    return failure('token_expired', 'the access token has already expired (its exp)', status);
  expiresAt = Math.min(expiresAt ?? Infinity, exp ?? Infinity);
  if (expiresAt === Infinity) expiresAt = now + DEFAULT_LIFETIME_MS;
  // An absurd lifetime (`expires_in: 1e300`) would keep a token, revoked since, for the life of the process.
  expiresAt = Math.min(expiresAt, now + MAX_LIFETIME_MS);
  return { ok: true, accessToken: token, issuedAt: now, expiresAt };
}

/**
 * POSTs `grant` (undefined values left out) with the client's authentication, and judges the answer.
 * No value of the grant, the secret or the answer's token ever reaches an outcome's message.
 */
export async function requestToken(
  endpoint: TokenEndpoint,
  grant: Readonly<Record<string, string | undefined>>,
  now: () => number = Date.now,
): Promise<TokenOutcome> {
  // One deadline for all of it: a Workload API that does not answer counts as much as an endpoint that does not.
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), endpoint.timeoutMs);
  const aborted = new Promise<Failure>((resolve) =>
    deadline.signal.addEventListener('abort', () => resolve(timedOut(endpoint)), { once: true }),
  );
  try {
    const auth = await Promise.race([authenticate(endpoint), aborted]);
    if ('ok' in auth) return auth;
    const form = new URLSearchParams();
    for (const [name, value] of Object.entries(grant)) if (value !== undefined) form.append(name, value);
    for (const [name, value] of auth.form) form.append(name, value);
    const answered = await post(endpoint, form.toString(), auth, deadline.signal);
    if ('ok' in answered) return answered;
    return judgeTokenAnswer(answered.status, answered.text, now());
  } finally {
    clearTimeout(timer);
  }
}
