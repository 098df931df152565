// Request headers on their way to the app: the verified identity headers come first (an app that reads
// only the first N fields still sees them), then the client's headers without the hop-by-hop ones and
// without any it sent under a name we own (identity headers, XFCC, X-Forwarded-*, X-Request-Id).
// Names are compared after folding case and `_` to `-`, because some app frameworks (CGI/WSGI, nginx
// with underscores_in_headers) read `x_spiffe_id` as `x-spiffe-id`.
import { API_KEY_HEADER, type ApiKeyFormat } from '../authn/api-keys.js';
import type { PeerIdentity } from '../authn/identity.js';
import type { CertificateIdentity } from '../authz/rule-engine.js';
import { type ClaimHeaderMapping, claimHeaderFields } from './claim-headers.js';
import type { SpiffeId } from '../spiffe/id.js';
import { type RequestTrace, validTracestate } from './request-id.js';

export const XFCC_HEADER = 'x-forwarded-client-cert';
/** How the caller was admitted: mtls, jwt-svid, oidc, k8s-sa or api-key. */
export const AUTH_METHOD_HEADER = 'x-auth-method';
/** The name of the API key a caller authenticated with (`--api-keys-file`). */
export const API_KEY_NAME_HEADER = 'x-api-key-name';

/**
 * Who connected, as a proxy tells the app: set by us, never taken from the caller (an unverified
 * address or scheme must not reach an app that logs or trusts it).
 */
export const FORWARDED_FOR_HEADER = 'x-forwarded-for';
export const FORWARDED_PROTO_HEADER = 'x-forwarded-proto';
/**
 * The request's id (request-id.ts), set by us: a caller's own could be chosen to match another request's
 * log lines, so it is removed like the identity headers.
 */
export const REQUEST_ID_HEADER = 'x-request-id';
const CALLER_FORWARDING_HEADERS = [
  'forwarded',
  FORWARDED_FOR_HEADER,
  FORWARDED_PROTO_HEADER,
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
];

/**
 * The method-override convention (Express's method-override, Symfony, Laravel, ASP.NET Core): an app that follows
 * it runs the method these name instead of the request line's, which is the one rules judged. A POST allowed where
 * DELETE is denied must not reach such an app as a DELETE, so the caller's are removed like the identity headers.
 */
const METHOD_OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'];

/** The connection the request came on, for X-Forwarded-For and X-Forwarded-Proto. */
export interface RequestOrigin {
  readonly address: string | undefined;
  readonly proto: 'https' | 'http';
}

/**
 * RFC 9110 §7.6.1 connection-specific headers, never forwarded; `close`, a field name RFC 9110 §16.3.2.2 reserves
 * (it would read as the `close` connection option); and `expect`, which we answer ourselves (100 Continue once
 * the caller is admitted), so that the app does not wait to send one.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'close',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);

export interface HeaderPolicy {
  /** Header names (lowercase) that carry the verified SPIFFE ID. */
  identityHeaders: readonly string[];
  /** Set an Envoy-style x-forwarded-client-cert header (mTLS callers). */
  xfcc: boolean;
  /** Headers for token callers: the issuer name and the token subject. */
  issuerHeader?: string;
  subjectHeader?: string;
  /** JWT mode: the bearer token is the caller's credential, not the app's; removed unless forwarded. */
  stripAuthorization?: boolean;
  /** API keys are accepted: `x-api-key` and the key header are credentials and never reach the app. */
  apiKeys?: boolean;
  /** `--api-key-header` and `--api-key-prefix`: where callers send keys (default `x-api-key`, `sk_`). */
  apiKeyFormat?: ApiKeyFormat;
  /** Our own SPIFFE ID, for XFCC `By=`. */
  self: () => SpiffeId;
  /**
   * `--claim-header` and the policy file's `claim_headers`: the mappings in force (the policy's change on
   * reload, so this returns the same array until they do).
   */
  claimHeaders?: () => readonly ClaimHeaderMapping[];
  /** `--identity-assertion`: the header, and the signed assertion of an admitted caller (identity-assertion.ts). */
  assertion?: { readonly header: string; readonly sign: (caller: AdmittedCaller) => string };
}

export const DEFAULT_ISSUER_HEADER = 'x-jwt-issuer';
export const DEFAULT_SUBJECT_HEADER = 'x-jwt-subject';

function fold(name: string): string {
  return name.toLowerCase().replaceAll('_', '-');
}

/** Names we own, folded: anything the client sends under them is dropped. */
export function protectedNames(
  policy: Pick<
    HeaderPolicy,
    | 'identityHeaders'
    | 'issuerHeader'
    | 'subjectHeader'
    | 'stripAuthorization'
    | 'apiKeys'
    | 'apiKeyFormat'
    | 'assertion'
    | 'claimHeaders'
  >,
): Set<string> {
  const names = [
    XFCC_HEADER,
    AUTH_METHOD_HEADER,
    API_KEY_NAME_HEADER,
    REQUEST_ID_HEADER,
    ...CALLER_FORWARDING_HEADERS,
    ...METHOD_OVERRIDE_HEADERS,
    ...policy.identityHeaders,
    policy.issuerHeader,
    policy.subjectHeader,
    policy.assertion?.header,
    ...(policy.claimHeaders?.() ?? []).map((m) => m.header),
  ];
  if (policy.stripAuthorization) names.push('authorization');
  // x-api-key stays ours under another --api-key-header: a key sent there out of habit never reaches the app.
  if (policy.apiKeys) names.push(API_KEY_HEADER, policy.apiKeyFormat?.header ?? API_KEY_HEADER);
  return new Set(names.filter((n): n is string => n !== undefined).map(fold));
}

/** Who was admitted, as the forwarders pass it on: the credential, and the connection's certificate under it. */
export interface AdmittedCaller {
  readonly identity: PeerIdentity;
  /** The connection's certificate, when a token or key over it was what the rule admitted. */
  readonly certificate?: CertificateIdentity;
  /** The rule that admitted it (for the signed assertion). */
  readonly decision?: { readonly rule: string };
}

/** Envoy's XFCC element. SPIFFE IDs cannot contain `,;="`, so no value needs quoting. */
export function formatXfcc(self: SpiffeId, peer: CertificateIdentity): string {
  return `By=${self};Hash=${peer.leafSha256};URI=${peer.id}`;
}

/** Headers that frame the message: a client listing them in `Connection` must not make them vanish. */
const NEVER_CONNECTION_LISTED = new Set(['content-length', 'transfer-encoding', 'host']);

/**
 * Builds the header list for the upstream request from the client's raw headers (a flat
 * [name, value, ...] array, as Node gives it), keeping repeated headers and their order.
 *
 * Message framing is restated, never dropped: Node has already de-chunked a `transfer-encoding` body,
 * so the upstream request says `transfer-encoding: chunked` again. Without it Node would write a GET
 * body unframed and the app would read it as a second, unchecked request (request smuggling).
 * `websocket` requests an upgrade to exactly that protocol; every other upgrade token is dropped.
 * `trace`: the request's id, set as `x-request-id`; without a valid `traceparent`, the caller's
 * `traceparent` and `tracestate` are removed. `stripped`, if given, receives the names (never the values)
 * of the fields the caller sent under a name we own (for a debug line).
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  caller: AdmittedCaller,
  policy: HeaderPolicy,
  owned: ReadonlySet<string>,
  origin: RequestOrigin,
  upgrade?: 'websocket',
  trace?: RequestTrace,
  stripped?: string[],
): string[] {
  const out: string[] = [];
  const peer = caller.identity;
  if (peer.id) {
    const id = peer.id.toString();
    for (const name of policy.identityHeaders) out.push(name, id);
  }
  out.push(AUTH_METHOD_HEADER, peer.method);
  if (policy.assertion) out.push(policy.assertion.header, policy.assertion.sign(caller));
  // XFCC describes the client certificate of the connection, whatever credential the rule admitted.
  const certificate = peer.method === 'mtls' ? peer : caller.certificate;
  if (certificate && policy.xfcc) out.push(XFCC_HEADER, formatXfcc(policy.self(), certificate));
  if (peer.method === 'mtls') {
    // Nothing more: the SPIFFE ID and XFCC say it all.
  } else if (peer.method === 'api-key') {
    out.push(API_KEY_NAME_HEADER, peer.name);
  } else {
    if (peer.issuer !== undefined && policy.issuerHeader) out.push(policy.issuerHeader, peer.issuer);
    if (policy.subjectHeader) out.push(policy.subjectHeader, peer.subject);
    const mappings = policy.claimHeaders?.();
    if (mappings && mappings.length > 0) for (const field of claimHeaderFields(peer.claims, mappings)) out.push(field);
  }
  if (origin.address !== undefined) out.push(FORWARDED_FOR_HEADER, origin.address);
  out.push(FORWARDED_PROTO_HEADER, origin.proto);
  if (trace) out.push(REQUEST_ID_HEADER, trace.id);
  appendForwardable(out, rawHeaders, owned, trace?.traced === false, stripped);
  if (upgrade) out.push('connection', 'upgrade', 'upgrade', upgrade);
  return out;
}

/**
 * The request headers that may travel on (both directions of proxying): no hop-by-hop header, nothing the
 * client lists in `Connection` (framing excepted), nothing under a name in `owned` (compared folded), and
 * a de-chunked body re-announced as chunked.
 */
export function forwardableHeaders(rawHeaders: readonly string[], owned: ReadonlySet<string>): string[] {
  return appendForwardable([], rawHeaders, owned);
}

function appendForwardable(
  out: string[],
  rawHeaders: readonly string[],
  owned: ReadonlySet<string>,
  dropTrace = false,
  stripped?: string[],
): string[] {
  let connectionListed: Set<string> | undefined;
  let chunked = false;
  let tracestate: string[] | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i].toLowerCase();
    if (lower === 'tracestate') (tracestate ??= []).push(rawHeaders[i + 1]);
    else if (lower === 'connection') connectionListed = addConnectionListed(rawHeaders[i + 1], connectionListed);
    else if (lower === 'transfer-encoding') {
      chunked = true;
    }
  }
  const tracestateOk = tracestate === undefined || validTracestate(tracestate);
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    const lower = name.toLowerCase();
    if (owned.has(fold(name))) {
      stripped?.push(lower);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || connectionListed?.has(lower)) continue;
    if (dropTrace && (lower === 'traceparent' || lower === 'tracestate')) continue;
    // A valid traceparent travels; its tracestate only if it is valid too (W3C Trace Context §3.3).
    if (lower === 'tracestate' && !tracestateOk) continue;
    // The length we framed the body by, in digits no parser can read otherwise: `010` is 10 to us, and 8 to an
    // app that reads a leading 0 as octal (C's strtol with base 0).
    if (lower === 'content-length' && rawHeaders[i + 1].charCodeAt(0) === 0x30 && rawHeaders[i + 1].length > 1) {
      out.push(name, rawHeaders[i + 1].replace(/^0+(?=\d)/, ''));
      continue;
    }
    out.push(name, rawHeaders[i + 1]);
  }
  if (chunked) out.push('transfer-encoding', 'chunked');
  return out;
}

/**
 * The field names a `Connection` value lists (RFC 9110 §7.6.1), added to `into` (made when first needed), except
 * the framing ones and the hop-by-hop ones (dropped anyway, `close` among them): the usual `keep-alive` or `close`
 * adds none.
 */
function addConnectionListed(value: string, into: Set<string> | undefined): Set<string> | undefined {
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === '' || NEVER_CONNECTION_LISTED.has(name) || HOP_BY_HOP.has(name)) continue;
    (into ??= new Set()).add(name);
  }
  return into;
}

/**
 * Response headers from the app, minus hop-by-hop ones and those its `Connection` field lists (framing
 * excepted: a listed Content-Length still frames the body we relay). The usual `Connection: keep-alive`
 * lists nothing more, so only a response that does pays for a second pass. `ownLength`: Content-Length is left
 * out too, for an engine that writes the framing itself (the raw HTTP/1.1 engine: one field, its own digits).
 */
export function downstreamResponseHeaders(rawHeaders: readonly string[], ownLength = false): string[] {
  const out: string[] = [];
  let listed: Set<string> | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i].toLowerCase();
    if (!HOP_BY_HOP.has(lower)) {
      if (!(ownLength && lower === 'content-length')) out.push(rawHeaders[i], rawHeaders[i + 1]);
    } else if (lower === 'connection') listed = addConnectionListed(rawHeaders[i + 1], listed);
  }
  if (listed === undefined) return out;
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) {
    if (!listed.has(out[i].toLowerCase())) kept.push(out[i], out[i + 1]);
  }
  return kept;
}
