// The sidecar's configuration: one frozen Config, its defaults from the one table (config/defaults.ts), and
// validation that fails closed before any socket opens. Every error names the flag and says how to fix it.
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { RUN_DEFAULTS as DEFAULTS } from './config/defaults.js';
import { parseDuration } from './duration.js';
import { isApiKeyPrefix } from './authn/api-keys.js';
import { ISSUER_NAME_FORMAT } from './authn/identity.js';
import { SidecarError } from './errors.js';
import { type ClaimHeaderMapping, parseClaimHeaderFlag } from './proxy/claim-headers.js';
import type { FileIdentityOptions } from './identity/file-source.js';
import { parseWorkloadEndpoint, type WorkloadEndpoint } from './identity/workload-endpoint.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './log.js';
import type { InboundLimits } from './proxy/limits.js';
import type { TcpUpstream } from './proxy/tcp.js';
import { parseTrustDomain } from './spiffe/id.js';
import { compileAllowRules, type IdMatcher } from './spiffe/match.js';
import {
  parseRateLimitStoreFlags,
  type RateLimitStoreConfig,
  type RateLimitStoreFlags,
} from './config/rate-limit-store-flags.js';

/** Options as the CLI hands them over: strings and booleans, keyed by flag name. */
export interface RawOptions extends RateLimitStoreFlags {
  listen?: string;
  upstream?: string;
  'unsafe-upstream'?: boolean;
  protocol?: string;
  workers?: string;
  'upstream-protocol'?: string;
  'http-engine'?: string;
  'proxy-protocol'?: string;
  'mtls-cert-file'?: string;
  'mtls-key-file'?: string;
  'mtls-ca-file'?: string;
  'federated-bundle'?: string[];
  allow?: string[];
  'allow-any'?: boolean;
  'identity-header'?: string[];
  xfcc?: boolean;
  'log-level'?: string;
  watch?: boolean;
  'policy-file'?: string;
  'policy-mode'?: string;
  'api-keys-file'?: string;
  'reload-interval'?: string;
  'workload-api-socket'?: string;
  'svid-hint'?: string;
  'admin-listen'?: string;
  'ready-requires-upstream'?: boolean;
  'drain-timeout'?: string;
  'handshake-timeout'?: string;
  'header-timeout'?: string;
  'idle-timeout'?: string;
  'upstream-timeout'?: string;
  'max-header-bytes'?: string;
  'max-header-count'?: string;
  'max-connections'?: string;
  'request-body-timeout'?: string;
  'request-body-min-rate'?: string;
  'response-write-timeout'?: string;
  'tunnel-idle-timeout'?: string;
  'log-format'?: string;
  config?: string;
  'auth-mode'?: string;
  'jwt-transport'?: string;
  'unsafe-plaintext-jwt'?: boolean;
  'jwt-audience'?: string[];
  'jwt-bundle-file'?: string[];
  'jwt-issuer'?: string[];
  'jwt-jwks'?: string[];
  'jwt-ca-file'?: string;
  'k8s-trust-domain'?: string;
  'allow-issuer'?: string[];
  'jwt-forward-token'?: boolean;
  'jwt-issuer-header'?: string;
  'jwt-subject-header'?: string;
  'k8s-token-review'?: boolean;
  'k8s-api-server'?: string;
  'k8s-token-file'?: string;
  'k8s-token-review-interval'?: string;
  'k8s-token-review-only'?: boolean;
  'k8s-api-ca-file'?: string;
  'max-token-lifetime'?: string;
  'jwt-replay-cache'?: string;
  'claim-header'?: string[];
  'api-key-header'?: string;
  'api-key-prefix'?: string;
  'api-key-unused-after'?: string;
  'identity-assertion'?: boolean;
  'identity-assertion-header'?: string;
  'identity-assertion-audience'?: string;
  'identity-assertion-ttl'?: string;
  outbound?: string[];
  /** SPIFFE_ENDPOINT_SOCKET from the environment (Workload Endpoint §4): the default socket. */
  spiffeEndpointSocket?: string;
}

/** Where our identity comes from. */
export type IdentitySourceConfig =
  | { readonly kind: 'files'; readonly files: FileIdentityOptions }
  | { readonly kind: 'workload-api'; readonly endpoint: WorkloadEndpoint; readonly hint: string | undefined };

export interface JwtIssuerConfig {
  readonly name: string;
  readonly issuer: string;
  /** An issuer named `k8s` (or `k8s-…`) is a Kubernetes API server: service accounts map to SPIFFE IDs. */
  readonly kind: 'oidc' | 'k8s';
  /** Where its keys are: a JWKS URL or file; undefined = OIDC discovery. */
  readonly jwks?: { readonly url?: string; readonly file?: string };
}

/** Bearer tokens: JWT-SVIDs, OIDC issuers' tokens and Kubernetes service-account tokens. */
export interface TokenAuthConfig {
  readonly audience: readonly string[];
  readonly bundleFiles: readonly { trustDomain: string; file: string }[];
  readonly issuers: readonly JwtIssuerConfig[];
  readonly k8sTrustDomain: string;
  /** `--jwt-ca-file`: an extra CA for fetching the issuers' keys. */
  readonly caFile: string | undefined;
  readonly allowIssuers: readonly string[];
  readonly forwardToken: boolean;
  readonly issuerHeader: string;
  readonly subjectHeader: string;
  /** Confirm Kubernetes tokens with the API server's TokenReview (`only`: without the issuer's JWKS). */
  readonly tokenReview:
    | {
        readonly apiServer: string;
        readonly tokenFile: string;
        readonly intervalMs: number;
        readonly only: boolean;
        /** `--k8s-api-ca-file`: the API server's CA (not the issuers'). */
        readonly caFile: string | undefined;
      }
    | undefined;
  /** `--max-token-lifetime`: refuse tokens whose `exp - iat` is longer. */
  readonly maxTokenLifetimeMs: number | undefined;
  /** `--jwt-replay-cache N`: remember this many `jti`s and admit each once. */
  readonly replayCacheSize: number | undefined;
}

/**
 * How callers authenticate on the inbound listener. `mode` is the one flag (`--auth-mode`); `transport` says
 * what the listener speaks: plain HTTP, TLS with our SVID, or TLS that asks for the caller's certificate
 * (mtls). `tokens`: bearer tokens are accepted (always in JWT mode; in mTLS mode when `--jwt-audience` is given).
 */
export type AuthConfig =
  | { readonly mode: 'mtls'; readonly transport: 'mtls'; readonly tokens: TokenAuthConfig | undefined }
  | { readonly mode: 'jwt'; readonly transport: 'plain' | 'tls' | 'mtls'; readonly tokens: TokenAuthConfig };

export type OutboundAuth = (typeof OUTBOUND_AUTH)[number];

/** An outbound route's OAuth 2.0 client: where it gets tokens, as whom. */
export interface OutboundOAuth {
  readonly tokenEndpoint: URL;
  readonly clientId: string;
  /** secret: client_secret_basic from `clientSecretFile`; private-key-jwt: a JWT-SVID as client assertion (RFC 7523); mtls: our SVID (RFC 8705). */
  readonly clientAuth: 'secret' | 'private-key-jwt' | 'mtls';
  readonly clientSecretFile: string | undefined;
  /** Space-separated, as OAuth sends it (written with `+` in the route, since `,` separates options). */
  readonly scope: string | undefined;
  /** RFC 8707 resource indicator. */
  readonly resource: string | undefined;
}

export interface OutboundRouteConfig {
  readonly host: string;
  readonly port: number;
  readonly remote: URL;
  /** The remote's expected SPIFFE ID, in allow-rule syntax; required for https remotes. */
  readonly id: string | undefined;
  /** `id`, compiled once (here, where it is validated). */
  readonly idRule: IdMatcher | undefined;
  /**
   * mtls: our SVID only; jwt: a JWT-SVID or token-file; client-credentials (RFC 6749 §4.4): our own access
   * token; token-exchange (RFC 8693): the caller's verified token exchanged for one for the remote; forward: the
   * caller's verified token, unchanged. Every https remote is also mTLS with our SVID.
   */
  readonly auth: OutboundAuth;
  readonly audience: string | undefined;
  readonly tokenFile: string | undefined;
  /** client-credentials and token-exchange: the token endpoint and how we authenticate to it. */
  readonly oauth: OutboundOAuth | undefined;
  /** http: the app speaks HTTP/1.1 to LISTEN; h2 (`protocol=h2`): cleartext HTTP/2 (gRPC), carried as HTTP/2
   * over mTLS; tcp (a `tls://` remote): bytes, relayed over mTLS. */
  readonly protocol: 'http' | 'h2' | 'tcp';
}

export interface Config {
  readonly auth: AuthConfig;
  /** Egress routes: the app calls LISTEN in plain HTTP, the sidecar calls the remote with our identity. */
  readonly outbound: readonly OutboundRouteConfig[];
  /** Whether an inbound listener runs (it needs --upstream); an outbound-only sidecar has none. */
  readonly inbound: boolean;
  readonly listen: { readonly host: string; readonly port: number };
  /** What the inbound listener speaks: HTTP (L7: per-request policy, identity headers) or bytes (L4). */
  readonly protocol: 'http' | 'tcp';
  /** The app behind the inbound listener (unused without one); `--protocol tcp`: see tcpUpstream. */
  readonly upstream: URL;
  /** `--workers`: processes serving the listeners (1: this one, no cluster). */
  readonly workers: number;
  /** How the app is reached in HTTP mode: HTTP/1.1, or cleartext HTTP/2 (gRPC). */
  readonly upstreamProtocol: 'h1' | 'h2c';
  /** `--http-engine`: how HTTP/1.1 callers are served (an h2c app: always node:http). */
  readonly http1Engine: 'raw' | 'node';
  /** `--protocol tcp`: where the bytes go, and whether a PROXY v2 header goes first. */
  readonly tcp: { readonly upstream: TcpUpstream; readonly proxyProtocol: boolean } | undefined;
  /** Where our X.509 identity comes from; JWT mode over plain HTTP may have none. */
  readonly source: IdentitySourceConfig | undefined;
  readonly allow: readonly string[];
  /** `allow`, compiled once here: the authorizer matches callers with it. */
  readonly allowRules: IdMatcher;
  readonly allowAny: boolean;
  /** `--policy-file`: per-route rules instead of the allow flags; `dryRun` lets denials through. */
  readonly policy: { readonly file: string; readonly dryRun: boolean } | undefined;
  /** `--api-keys-file`: static API keys, named in the policy file's rules. */
  readonly apiKeysFile: string | undefined;
  /** `--api-key-header`, `--api-key-prefix`, `--api-key-unused-after`: how keys are sent, what they look like. */
  readonly apiKeys: { readonly header: string; readonly prefix: string; readonly unusedAfterMs: number };
  /** `--rate-limit-store` and its flags: the policy's rate limits counted across replicas. */
  readonly rateLimitStore: RateLimitStoreConfig | undefined;
  readonly identityHeaders: readonly string[];
  /** `--claim-header`: verified token claims the app receives as headers. */
  readonly claimHeaders: readonly ClaimHeaderMapping[];
  /** `--identity-assertion`: a signed JWT of the admitted caller for the app; `audience` undefined: our SPIFFE ID. */
  readonly identityAssertion:
    { readonly header: string; readonly audience: string | undefined; readonly ttlSeconds: number } | undefined;
  readonly xfcc: boolean;
  readonly logLevel: LogLevel;
  /** File mode: reload the identity files when their directories change. */
  readonly watch: boolean;
  /** Also re-read them on this period (for file systems without change events); undefined = never. */
  readonly reloadIntervalMs: number | undefined;
  readonly logFormat: LogFormat;
  readonly admin: { readonly host: string; readonly port: number };
  /** /readyz also requires the app to accept a TCP connection. */
  readonly readyRequiresUpstream: boolean;
  /** SIGTERM: how long in-flight requests may take to finish. */
  readonly drainTimeoutMs: number;
  readonly limits: InboundLimits;
}

function invalid(message: string): never {
  throw new SidecarError('ERR_CONFIG_INVALID', message);
}

/** `HOST:PORT` split, or undefined when `text` is not of that form (the port may be out of range). */
function splitHostPort(text: string): { host: string; port: number; bracketed: boolean } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  return m ? { host: m[1] ?? m[2], port: Number(m[3]), bracketed: m[1] !== undefined } : undefined;
}

/**
 * `HOST:PORT` for `flag`; `exampleHost` is what the error suggests (a lone port becomes `exampleHost:PORT`):
 * every interface for a listener callers reach, loopback for one only this machine should.
 */
export function parseHostPort(text: string, flag: string, exampleHost = '0.0.0.0'): { host: string; port: number } {
  const parts = splitHostPort(text);
  if (!parts) {
    const port = /^:?(\d{1,5})$/.exec(text)?.[1];
    if (port !== undefined) invalid(`${flag} ${JSON.stringify(text)}: a port alone; write ${exampleHost}:${port}`);
    invalid(`${flag} ${JSON.stringify(text)}: expected HOST:PORT, e.g. ${exampleHost}:8443 (IPv6: [::]:8443)`);
  }
  if (parts.port > 65535) invalid(`${flag} ${JSON.stringify(text)}: port ${parts.port} is above 65535`);
  if (parts.bracketed && isIP(parts.host) !== 6)
    invalid(`${flag} ${JSON.stringify(text)}: "${parts.host}" is not an IPv6 address`);
  return { host: parts.host, port: parts.port };
}

function isLoopbackIp(hostname: string): boolean {
  return hostname !== 'localhost' && isLoopback(hostname);
}

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * A URL flag's value written without a scheme: `localhost:8080` (which would parse as the scheme `localhost:`)
 * or a bare host. A scheme without `//` (`unix:run/app.sock`) is left to the URL checks.
 */
function schemeless(text: string): boolean {
  return !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(text) || /^[^:/]+:\d+(\/.*)?$/.test(text);
}

function parseUpstream(text: string | undefined, unsafe: boolean): URL {
  if (!text) {
    throw new SidecarError(
      'ERR_CONFIG_MISSING',
      '--upstream is required: the app behind the sidecar, e.g. --upstream http://127.0.0.1:8080',
    );
  }
  if (schemeless(text))
    invalid(`--upstream ${JSON.stringify(text)}: no scheme; write http://${text.replace(/^\/+/, '')}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return invalid(`--upstream ${JSON.stringify(text)}: not a URL; write e.g. http://127.0.0.1:8080`);
  }
  if (url.protocol === 'tcp:' || url.protocol === 'unix:')
    invalid(`--upstream ${text}: a ${url.protocol}// upstream needs --protocol tcp (bytes); HTTP apps are http://`);
  if (url.protocol !== 'http:')
    invalid(
      `--upstream ${text}: only http:// upstreams are supported (the app listens on plain HTTP next to the sidecar)`,
    );
  if (url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
    invalid(
      `--upstream ${text}: give only the origin (scheme, host, port), e.g. http://127.0.0.1:8080; request paths are forwarded as they come`,
    );
  }
  if (url.port === '0') invalid(`--upstream ${text}: port 0 cannot be connected to; give the app's port`);
  if (!isLoopback(url.hostname) && !unsafe) {
    throw new SidecarError(
      'ERR_UNSAFE_UPSTREAM',
      `--upstream ${text}: the host is not a loopback address, so identity headers would cross the network in plain text; use 127.0.0.1 (the app in the same pod), or add --unsafe-upstream if you really mean it`,
    );
  }
  return url;
}

const MAX_WORKERS = 64;

function parseWorkers(text: string): number {
  if (text === 'auto') return availableParallelism();
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= MAX_WORKERS))
    invalid(`--workers ${JSON.stringify(text)}: give 1 to ${MAX_WORKERS}, or auto (one per core)`);
  return n;
}

function parseHttpEngine(text: string | undefined, tcp: boolean): 'raw' | 'node' {
  if (text === undefined) return DEFAULTS['http-engine'].value;
  if (text !== 'raw' && text !== 'node') invalid(`--http-engine ${JSON.stringify(text)}: use raw or node`);
  if (tcp) invalid('--http-engine is for --protocol http; TCP mode relays bytes as they come');
  return text;
}

function parseUpstreamProtocol(text: string | undefined, tcp: boolean): 'h1' | 'h2c' {
  if (text === undefined) return DEFAULTS['upstream-protocol'].value;
  if (text !== 'h1' && text !== 'h2c') invalid(`--upstream-protocol ${JSON.stringify(text)}: use h1 or h2c`);
  if (tcp) invalid('--upstream-protocol is for --protocol http; TCP mode relays bytes as they come');
  return text;
}

/** `--protocol tcp`: `--upstream tcp://HOST:PORT` or `unix:///path`, and `--proxy-protocol v2`. */
function parseTcpMode(raw: RawOptions, auth: AuthConfig): Config['tcp'] {
  const protocol = raw.protocol ?? DEFAULTS.protocol.value;
  if (protocol !== 'http' && protocol !== 'tcp') invalid(`--protocol ${JSON.stringify(protocol)}: use http or tcp`);
  const proxyProtocol = raw['proxy-protocol'];
  if (proxyProtocol !== undefined && proxyProtocol !== 'v2')
    invalid(`--proxy-protocol ${JSON.stringify(proxyProtocol)}: the only version is v2`);
  if (protocol === 'http') {
    if (proxyProtocol !== undefined) invalid('--proxy-protocol needs --protocol tcp (HTTP apps get identity headers)');
    return undefined;
  }
  if (auth.mode !== 'mtls' || auth.tokens)
    invalid('--protocol tcp needs --auth-mode mtls without --jwt-audience: a byte stream has no place for a token');
  for (const flag of ['policy-file', 'api-keys-file'] as const) {
    if (raw[flag] !== undefined)
      invalid(`--${flag} needs --protocol http: in TCP mode there are no methods, paths or headers; use --allow`);
  }
  const text = raw.upstream;
  if (!text)
    throw new SidecarError(
      'ERR_CONFIG_MISSING',
      '--upstream is required: the app behind the sidecar, e.g. --upstream tcp://127.0.0.1:5432 or unix:///run/app.sock',
    );
  const hint = 'write tcp://127.0.0.1:5432 or unix:///run/app.sock';
  if (schemeless(text)) invalid(`--upstream ${JSON.stringify(text)}: no scheme; ${hint}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return invalid(`--upstream ${JSON.stringify(text)}: not a URL; ${hint}`);
  }
  if (url.protocol === 'unix:') {
    if (url.host !== '' || !url.pathname.startsWith('/') || url.search || url.hash)
      invalid(`--upstream ${text}: a unix socket needs an absolute path; ${hint}`);
    return Object.freeze({
      upstream: { kind: 'unix' as const, path: decodeURIComponent(url.pathname) },
      proxyProtocol: !!proxyProtocol,
    });
  }
  if (url.protocol !== 'tcp:')
    invalid(`--upstream ${text}: --protocol tcp forwards to tcp:// or unix:// only; ${hint}`);
  if (
    !url.port ||
    url.username ||
    url.password ||
    url.search ||
    url.hash ||
    (url.pathname !== '' && url.pathname !== '/')
  )
    invalid(`--upstream ${text}: give only host and port; ${hint}`);
  if (url.port === '0') invalid(`--upstream ${text}: port 0 cannot be connected to; give the app's port`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!isLoopback(url.hostname) && !raw['unsafe-upstream']) {
    throw new SidecarError(
      'ERR_UNSAFE_UPSTREAM',
      `--upstream ${text}: the host is not a loopback address, so the bytes would cross the network in plain text; use 127.0.0.1 (the app in the same pod), or add --unsafe-upstream if you really mean it`,
    );
  }
  return Object.freeze({
    upstream: { kind: 'tcp' as const, host, port: Number(url.port) },
    proxyProtocol: !!proxyProtocol,
  });
}

/**
 * Header names we write: lower-case letters, digits and `-` only. RFC 9110 allows more, but apps read
 * some names differently (CGI, WSGI and nginx fold `_` to `-`; some drop names with `_` or `.`), and a
 * name the app reads as another would let a caller's header stand in for ours.
 */
const HEADER_NAME = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'authorization',
  'proxy-authorization',
  'cookie',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
  'x-api-key',
  'x-api-key-name',
]);

function parseIdentityHeaders(names: readonly string[]): string[] {
  const out: string[] = [];
  for (const raw of names) {
    const name = raw.toLowerCase();
    if (!HEADER_NAME.test(name))
      invalid(
        `--identity-header ${JSON.stringify(raw)}: use lower-case letters, digits and - only (apps read _ and other characters differently), e.g. x-spiffe-id`,
      );
    if (RESERVED_HEADERS.has(name) || name === 'x-forwarded-client-cert') {
      invalid(`--identity-header ${raw}: "${name}" is reserved; pick a name such as x-spiffe-id`);
    }
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

function parseFederatedBundles(values: readonly string[]): { trustDomain: string; file: string }[] {
  const seen = new Set<string>();
  return values.map((value) => {
    const eq = value.indexOf('=');
    if (eq <= 0 || eq === value.length - 1) {
      invalid(
        `--federated-bundle ${JSON.stringify(value)}: expected TRUST_DOMAIN=FILE, e.g. --federated-bundle partner.org=/etc/spiffe/partner.org.pem`,
      );
    }
    let trustDomain: string;
    try {
      trustDomain = parseTrustDomain(value.slice(0, eq));
    } catch (err) {
      return invalid(`--federated-bundle ${value}: ${(err as Error).message}`);
    }
    if (seen.has(trustDomain))
      invalid(`--federated-bundle: trust domain "${trustDomain}" is given twice; one file per trust domain`);
    seen.add(trustDomain);
    return { trustDomain, file: value.slice(eq + 1) };
  });
}

/** Between a second (a tighter poll is a busy loop) and a day (beyond, timers overflow to 1 ms). */
function parseReloadInterval(text: string): number {
  const ms = parseDuration(text, '--reload-interval');
  if (ms < 1000 || ms > 86_400_000) invalid(`--reload-interval ${text}: must be between 1s and 24h`);
  return ms;
}

function parseLogFormat(text: string | undefined): LogFormat {
  const format = (text ?? DEFAULTS['log-format'].value) as LogFormat;
  if (!LOG_FORMATS.includes(format)) invalid(`--log-format ${JSON.stringify(text)}: use json or pretty`);
  return format;
}

function parseCount(text: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    invalid(`--${flag} ${JSON.stringify(text)}: a whole number from ${min} to ${max}`);
  }
  return Number(text);
}

function parseLimits(raw: RawOptions, workers: number): InboundLimits {
  const duration = (
    flag:
      | 'handshake-timeout'
      | 'header-timeout'
      | 'idle-timeout'
      | 'upstream-timeout'
      | 'request-body-timeout'
      | 'response-write-timeout'
      | 'tunnel-idle-timeout',
  ) => parseDuration(raw[flag] ?? DEFAULTS[flag].value, `--${flag}`);
  const count = (
    flag: 'max-header-bytes' | 'max-header-count' | 'max-connections' | 'request-body-min-rate',
    min: number,
    max: number,
  ) => parseCount(raw[flag] ?? DEFAULTS[flag].value, flag, min, max);
  return {
    handshakeTimeoutMs: duration('handshake-timeout'),
    headerTimeoutMs: duration('header-timeout'),
    idleTimeoutMs: duration('idle-timeout'),
    upstreamTimeoutMs: duration('upstream-timeout'),
    requestBodyTimeoutMs: duration('request-body-timeout'),
    responseWriteTimeoutMs: duration('response-write-timeout'),
    tunnelIdleTimeoutMs: duration('tunnel-idle-timeout'),
    maxHeaderBytes: count('max-header-bytes', 1024, 1024 * 1024),
    // At least the fields a request needs (Host, our own are added after the count); at most what a
    // default Node app reads (2000), so that nothing we forward falls past its limit.
    maxHeaderCount: count('max-header-count', 8, 1000),
    // Per process: with --workers each takes its share (rounded up), so that the sidecar holds N at most, not N
    // per worker (a review: --workers 2 --max-connections 2 accepted 4).
    maxConnections: Math.ceil(count('max-connections', 1, 1_000_000) / workers),
    requestBodyMinRate: count('request-body-min-rate', 0, 1_000_000_000),
  };
}

const FILE_FLAGS = ['mtls-cert-file', 'mtls-key-file', 'mtls-ca-file'] as const;

/**
 * File mode when any --mtls-* file is given; SPIRE mode with --workload-api-socket, or else when
 * SPIFFE_ENDPOINT_SOCKET is set. The two exclude each other.
 */
function parseSource(raw: RawOptions): IdentitySourceConfig {
  const given = FILE_FLAGS.filter((f) => raw[f]);
  const socketFlag = raw['workload-api-socket'];
  if (socketFlag && given.length > 0) {
    invalid(
      `--workload-api-socket and ${given.map((f) => `--${f}`).join(', ')} exclude each other: the identity comes either from the SPIRE agent or from files`,
    );
  }
  if (socketFlag || (given.length === 0 && raw.spiffeEndpointSocket)) {
    const from = socketFlag ? '--workload-api-socket' : 'SPIFFE_ENDPOINT_SOCKET';
    for (const flag of ['federated-bundle', 'reload-interval'] as const) {
      if (raw[flag] !== undefined && raw[flag]?.length !== 0) {
        invalid(`--${flag} is for file mode; in SPIRE mode the Workload API delivers bundles and rotations`);
      }
    }
    return Object.freeze({
      kind: 'workload-api',
      endpoint: parseWorkloadEndpoint((socketFlag ?? raw.spiffeEndpointSocket) as string, from),
      hint: raw['svid-hint'] || undefined,
    });
  }
  if (raw['svid-hint'])
    invalid('--svid-hint selects among the SVIDs of the Workload API; it needs SPIRE mode (--workload-api-socket)');
  const missing = FILE_FLAGS.filter((f) => !raw[f]);
  if (missing.length > 0) {
    throw new SidecarError(
      'ERR_CONFIG_MISSING',
      given.length === 0
        ? 'no identity source: give --workload-api-socket unix:///path/to/agent.sock (or set SPIFFE_ENDPOINT_SOCKET) for SPIRE mode, or --mtls-cert-file, --mtls-key-file and --mtls-ca-file for file mode'
        : `${missing.map((f) => `--${f}`).join(', ')} ${missing.length === 1 ? 'is' : 'are'} required: the sidecar's SVID (tls.crt), its key (tls.key) and the trust bundle of its trust domain (ca.crt)`,
    );
  }
  return Object.freeze({
    kind: 'files',
    files: Object.freeze({
      certFile: raw['mtls-cert-file'] as string,
      keyFile: raw['mtls-key-file'] as string,
      caFile: raw['mtls-ca-file'] as string,
      federatedBundles: Object.freeze(parseFederatedBundles(raw['federated-bundle'] ?? [])),
    }),
  });
}

function parseHeaderName(raw: string, flag: string): string {
  const name = raw.toLowerCase();
  if (!HEADER_NAME.test(name))
    invalid(
      `${flag} ${JSON.stringify(raw)}: use lower-case letters, digits and - only (apps read _ and other characters differently), e.g. x-jwt-subject`,
    );
  if (RESERVED_HEADERS.has(name)) invalid(`${flag} ${JSON.stringify(raw)}: "${name}" is reserved; pick another name`);
  return name;
}

/** `--api-key-header`, `--api-key-prefix` and `--api-key-unused-after` (each needs --api-keys-file). */
function parseApiKeyFlags(raw: RawOptions, identityHeaders: readonly string[]): Config['apiKeys'] {
  const given = (['api-key-header', 'api-key-prefix', 'api-key-unused-after'] as const).find(
    (f) => raw[f] !== undefined,
  );
  if (given && raw['api-keys-file'] === undefined) invalid(`--${given} needs --api-keys-file`);
  const written = raw['api-key-header'] ?? DEFAULTS['api-key-header'].value;
  // x-api-key is reserved for exactly this (parseHeaderName refuses it as a name the sidecar owns).
  const header = written.toLowerCase() === 'x-api-key' ? 'x-api-key' : parseHeaderName(written, '--api-key-header');
  if (header !== 'x-api-key' && (OWN_HEADERS.includes(header) || identityHeaders.includes(header)))
    invalid(`--api-key-header ${header}: the sidecar sets that header itself; pick another, e.g. x-gofannon-key`);
  const prefix = raw['api-key-prefix'] ?? DEFAULTS['api-key-prefix'].value;
  if (!isApiKeyPrefix(prefix))
    invalid(`--api-key-prefix ${JSON.stringify(prefix)}: 1-16 lower-case letters and digits, then "_", e.g. gak_`);
  const unusedAfterMs = parseDuration(
    raw['api-key-unused-after'] ?? DEFAULTS['api-key-unused-after'].value,
    '--api-key-unused-after',
  );
  return Object.freeze({ header, prefix, unusedAfterMs });
}

/** The names we set on every request, whatever the flags say (headers.ts owns them). */
const OWN_HEADERS = [
  'x-forwarded-client-cert',
  'x-auth-method',
  'x-api-key-name',
  'x-api-key',
  'x-request-id',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
  'forwarded',
];

/** The header names the sidecar sets whatever the policy says, and the flag (or `the sidecar`) that owns each. */
function fixedHeaderOwners(auth: AuthConfig, identityHeaders: readonly string[]): Map<string, string> {
  const taken = new Map<string, string>([
    ...OWN_HEADERS.map((n) => [n, 'the sidecar'] as const),
    ...identityHeaders.map((n) => [n, '--identity-header'] as const),
  ]);
  if (auth.tokens) {
    taken.set(auth.tokens.issuerHeader, '--jwt-issuer-header');
    taken.set(auth.tokens.subjectHeader, '--jwt-subject-header');
  }
  return taken;
}

/** Every header name the flags make ours, and the flag that owns it: a policy's claim mappings must avoid them. */
export function headerOwners(config: Config): Map<string, string> {
  const taken = fixedHeaderOwners(config.auth, config.identityHeaders);
  for (const m of config.claimHeaders) taken.set(m.header, '--claim-header');
  if (config.identityAssertion) taken.set(config.identityAssertion.header, '--identity-assertion-header');
  if (config.apiKeysFile !== undefined) taken.set(config.apiKeys.header, '--api-key-header');
  return taken;
}

/**
 * `--claim-header` and `--identity-assertion*`: what else the app receives. Every header name we set must be
 * ours alone: a claim or an assertion written under an identity header would be a spoofed identity.
 */
function parseAppHeaders(
  raw: RawOptions,
  auth: AuthConfig,
  identityHeaders: readonly string[],
  hasIdentity: boolean,
): Pick<Config, 'claimHeaders' | 'identityAssertion'> {
  const taken = fixedHeaderOwners(auth, identityHeaders);
  const claim = (raw['claim-header'] ?? []).map((value) => {
    if (!auth.tokens)
      invalid(`--claim-header ${value}: claims come from bearer tokens; give --jwt-audience (and the token flags)`);
    return parseClaimHeaderFlag(value);
  });
  for (const mapping of claim) {
    const owner = taken.get(mapping.header);
    if (owner) invalid(`--claim-header ${mapping.text}=${mapping.header}: "${mapping.header}" is set by ${owner}`);
    taken.set(mapping.header, '--claim-header');
  }
  const sub = (['identity-assertion-header', 'identity-assertion-audience', 'identity-assertion-ttl'] as const).find(
    (f) => raw[f] !== undefined,
  );
  if (!raw['identity-assertion']) {
    if (sub) invalid(`--${sub} needs --identity-assertion`);
    return { claimHeaders: Object.freeze(claim), identityAssertion: undefined };
  }
  const header = parseHeaderName(
    raw['identity-assertion-header'] ?? DEFAULTS['identity-assertion-header'].value,
    '--identity-assertion-header',
  );
  const owner = taken.get(header);
  if (owner) invalid(`--identity-assertion-header ${header}: "${header}" is set by ${owner}`);
  const audience = raw['identity-assertion-audience'];
  if (audience === '') invalid('--identity-assertion-audience: give the audience the app checks, e.g. orders');
  if (audience === undefined && !hasIdentity)
    invalid(
      '--identity-assertion needs --identity-assertion-audience here: without an identity of our own there is no SPIFFE ID to default it to',
    );
  const ttlMs = parseDuration(
    raw['identity-assertion-ttl'] ?? DEFAULTS['identity-assertion-ttl'].value,
    '--identity-assertion-ttl',
  );
  if (ttlMs < 1000 || ttlMs > 3_600_000 || ttlMs % 1000 !== 0)
    invalid(`--identity-assertion-ttl ${raw['identity-assertion-ttl']}: whole seconds from 1s to 1h, e.g. 60s`);
  return {
    claimHeaders: Object.freeze(claim),
    identityAssertion: Object.freeze({ header, audience, ttlSeconds: ttlMs / 1000 }),
  };
}

function parseTokenReview(
  raw: RawOptions,
  issuers: { name: string; issuer: string; kind: string; jwks?: object }[],
): TokenAuthConfig['tokenReview'] {
  const flags = (
    [
      'k8s-api-server',
      'k8s-token-file',
      'k8s-token-review-interval',
      'k8s-api-ca-file',
      'k8s-token-review-only',
    ] as const
  ).filter((f) => raw[f]);
  if (!raw['k8s-token-review'] && !raw['k8s-token-review-only']) {
    if (flags.length > 0) invalid(`--${flags[0]} needs --k8s-token-review`);
    return undefined;
  }
  const k8s = issuers.find((i) => i.kind === 'k8s');
  if (!k8s) {
    invalid('--k8s-token-review needs a Kubernetes issuer (--jwt-issuer k8s=https://kubernetes.default.svc)');
  }
  const only = raw['k8s-token-review-only'] ?? DEFAULTS['k8s-token-review-only'].value;
  if (only && k8s?.jwks)
    invalid(
      "--k8s-token-review-only verifies service-account tokens without the issuer's keys: drop --jwt-jwks k8s=…, or drop --k8s-token-review-only",
    );
  const apiServer = raw['k8s-api-server'] ?? DEFAULTS['k8s-api-server'].value;
  if (!apiServer.startsWith('https://')) invalid(`--k8s-api-server ${apiServer}: must be an https:// URL`);
  return Object.freeze({
    apiServer,
    tokenFile: raw['k8s-token-file'] ?? DEFAULTS['k8s-token-file'].value,
    intervalMs: parseDuration(
      raw['k8s-token-review-interval'] ?? DEFAULTS['k8s-token-review-interval'].value,
      '--k8s-token-review-interval',
    ),
    only,
    caFile: raw['k8s-api-ca-file'],
  });
}

/**
 * Every form of `--outbound` parseOutbound accepts, with what it does: `run --help` lists them, and an
 * error about the shape of a route points at them.
 */
export const OUTBOUND_FORMS: readonly (readonly [form: string, meaning: string])[] = [
  ['LISTEN=https://HOST:PORT,id=RULE', 'HTTP/1.1 over mTLS with our SVID; the remote must be who RULE says'],
  [
    'LISTEN=https://HOST:PORT,id=RULE,protocol=h2',
    'the app speaks cleartext HTTP/2 (gRPC) to LISTEN, carried as HTTP/2 over mTLS (protocol=h1: the default)',
  ],
  [
    'LISTEN=https://HOST:PORT,id=RULE,auth=jwt,audience=AUD[,token-file=PATH]',
    'a bearer token instead of our SVID: a JWT-SVID for AUD from the Workload API, or the token in PATH',
  ],
  [
    'LISTEN=http://127.0.0.1:PORT,auth=jwt,audience=AUD[,token-file=PATH]',
    'a bearer token over plain HTTP: to a loopback remote only',
  ],
  [
    'LISTEN=https://HOST:PORT,id=RULE,auth=client-credentials,token-endpoint=URL,client-id=ID,client-secret-file=PATH[,scope=A+B][,audience=AUD][,resource=URI]',
    "the sidecar's own access token (RFC 6749 §4.4, fetched and refreshed); client-auth=private-key-jwt or client-auth=mtls instead of a secret",
  ],
  [
    'LISTEN=https://HOST:PORT,id=RULE,auth=token-exchange,token-endpoint=URL,client-id=ID,client-secret-file=PATH,audience=AUD',
    "the caller's token (the app passes it on) exchanged for one for AUD (RFC 8693), cached until it nears its expiry",
  ],
  [
    'LISTEN=https://HOST:PORT,id=RULE,auth=forward',
    "the caller's token unchanged, only if this sidecar verified it, only to a verified remote",
  ],
  ['LISTEN=tls://HOST:PORT,id=RULE', 'bytes (L4: a database, any TCP protocol) over mTLS'],
];

const OUTBOUND_OPTIONS = [
  'id',
  'auth',
  'audience',
  'token-file',
  'protocol',
  'token-endpoint',
  'client-id',
  'client-secret-file',
  'client-auth',
  'scope',
  'resource',
];
/** How a route authenticates to the remote: our SVID, a JWT, or an OAuth access token (see OutboundOAuth). */
const OUTBOUND_AUTH = ['mtls', 'jwt', 'client-credentials', 'token-exchange', 'forward'] as const;
/** The route options that only the OAuth ways (client-credentials, token-exchange) take. */
const OAUTH_OPTIONS = ['token-endpoint', 'client-id', 'client-secret-file', 'client-auth', 'scope', 'resource'];
const OUTBOUND_EXAMPLE = '127.0.0.1:15001=https://orders.example:8443,id=spiffe://example.org/ns/shop/sa/orders';

/** LISTEN of a route: a literal loopback address, the only one the app (and nobody else) reaches. */
function parseOutboundListen(text: string, bad: (why: string) => never): { host: string; port: number } {
  const port = /^:?(\d{1,5})$/.exec(text)?.[1];
  if (port !== undefined) bad(`LISTEN "${text}" is a port alone; write 127.0.0.1:${port}`);
  const parts = splitHostPort(text);
  if (!parts) return bad(`LISTEN "${text}" is not HOST:PORT; write e.g. 127.0.0.1:15001`);
  if (parts.port > 65535) bad(`LISTEN port ${parts.port} is above 65535`);
  if (parts.bracketed && isIP(parts.host) !== 6) bad(`LISTEN "${text}": "${parts.host}" is not an IPv6 address`);
  // `localhost` is resolved at run time (to whatever the resolver says): only a literal address is sure.
  if (parts.host === 'localhost')
    bad(`LISTEN ${text}: write the address, 127.0.0.1:${parts.port} or [::1]:${parts.port}, not the name localhost`);
  if (!isLoopbackIp(parts.host))
    bad(
      `LISTEN ${text} is not loopback: whoever reaches it speaks with our identity, so only the app may; write 127.0.0.1:${parts.port}`,
    );
  return { host: parts.host, port: parts.port };
}

function parseOutbound(value: string): OutboundRouteConfig {
  const bad = (why: string): never => invalid(`--outbound ${JSON.stringify(value)}: ${why}`);
  const eq = value.indexOf('=');
  if (eq <= 0)
    bad(`expected LISTEN=REMOTE_URL,id=RULE, e.g. ${OUTBOUND_EXAMPLE} ('spiffe-sidecar run --help' lists every form)`);
  const listen = parseOutboundListen(value.slice(0, eq), bad);
  const [remoteText, ...pairs] = value.slice(eq + 1).split(',');
  if (schemeless(remoteText))
    bad(`the remote "${remoteText}" has no scheme; write https://${remoteText} (HTTP), or tls://${remoteText} (bytes)`);
  let remote: URL;
  try {
    remote = new URL(remoteText);
  } catch {
    return bad(`the remote ${JSON.stringify(remoteText)} is not a URL; write e.g. https://orders.example:8443`);
  }
  if (remote.protocol === 'tcp:') bad(`the remote ${remoteText}: bytes over mTLS are written tls://${remote.host}`);
  if (remote.protocol !== 'https:' && remote.protocol !== 'http:' && remote.protocol !== 'tls:')
    bad(
      `the remote ${remoteText}: must be https:// (or http:// with auth=jwt on loopback), or tls://HOST:PORT for bytes (L4)`,
    );
  if (remote.protocol === 'tls:' && !remote.port) bad('a tls:// remote needs a port, e.g. tls://db.example:5432');
  if (remote.pathname !== '/' || remote.search || remote.hash || remote.username || remote.password) {
    if (!(remote.protocol === 'tls:' && remote.pathname === ''))
      bad(
        `give only the remote origin (scheme, host, port), e.g. ${remote.protocol}//${remote.host}: paths are the app's`,
      );
  }
  const options = new Map<string, string>();
  for (const pair of pairs) {
    const i = pair.indexOf('=');
    const key = i < 0 ? pair : pair.slice(0, i);
    if (!OUTBOUND_OPTIONS.includes(key))
      bad(`unknown option ${JSON.stringify(pair)}; the options are ${OUTBOUND_OPTIONS.map((o) => `${o}=`).join(', ')}`);
    if (i < 0) bad(`option ${key} needs a value: ${key}=VALUE`);
    if (options.has(key)) bad(`option ${key}= is given twice`);
    options.set(key, pair.slice(i + 1));
  }
  const auth = (options.get('auth') ?? 'mtls') as OutboundAuth;
  if (!OUTBOUND_AUTH.includes(auth)) bad(`auth=${auth}: auth must be one of ${OUTBOUND_AUTH.join(', ')}`);
  const oauth = parseOutboundOAuth(auth, options, remote, bad);
  const id = options.get('id');
  let idRule: IdMatcher | undefined;
  if (id !== undefined) {
    try {
      idRule = compileAllowRules([id]);
    } catch (err) {
      return bad(`id=: ${(err as Error).message}`);
    }
  }
  if (remote.protocol === 'https:' && id === undefined)
    bad('an https remote needs id=: who it must be, e.g. id=spiffe://example.org/ns/shop/sa/orders');
  const protocol = options.get('protocol') ?? 'h1';
  if (protocol !== 'h1' && protocol !== 'h2') bad(`protocol=${protocol}: protocol must be h1 or h2`);
  if (protocol === 'h2' && remote.protocol !== 'https:')
    bad('protocol=h2 needs an https:// remote (HTTP/2 over mTLS; the app speaks cleartext HTTP/2 to LISTEN)');
  if (remote.protocol === 'tls:') {
    if (id === undefined) bad('a tls:// remote needs id=: who it must be');
    if (options.has('auth') || options.has('audience') || options.has('token-file'))
      bad('a tls:// remote (bytes) is always mTLS: auth=, audience= and token-file= are for HTTP routes');
  }
  if (remote.protocol === 'http:' && id !== undefined)
    bad('id= needs an https:// remote: plain HTTP proves no identity');
  if (auth === 'mtls' && remote.protocol === 'http:')
    bad(
      'auth=mtls needs an https:// remote; plain http:// is only for a bearer token (auth=jwt, client-credentials, token-exchange) to a loopback remote',
    );
  if (auth === 'jwt' && !options.get('audience')) bad('auth=jwt needs audience=: the audience the token is for');
  if (auth !== 'jwt' && options.has('token-file')) bad('token-file= is for auth=jwt routes');
  if (auth !== 'jwt' && !oauth && options.has('audience'))
    bad('audience= is for auth=jwt, client-credentials and token-exchange routes');
  if (auth !== 'mtls' && remote.protocol === 'http:' && !isLoopbackIp(remote.hostname)) {
    bad('a bearer token may cross the network only over https://');
  }
  // The caller's own token goes only where it is sure whom it reaches: a remote with a verified identity.
  if (auth === 'forward' && remote.protocol !== 'https:')
    bad("auth=forward sends the caller's token on: only to an https:// remote whose id= is verified");
  return Object.freeze({
    ...listen,
    remote,
    id,
    idRule,
    auth,
    audience: options.get('audience'),
    tokenFile: options.get('token-file'),
    oauth,
    protocol: remote.protocol === 'tls:' ? ('tcp' as const) : protocol === 'h2' ? ('h2' as const) : ('http' as const),
  });
}

/** The OAuth options of a client-credentials or token-exchange route; none for the other ways. */
function parseOutboundOAuth(
  auth: OutboundAuth,
  options: Map<string, string>,
  remote: URL,
  bad: (why: string) => never,
): OutboundOAuth | undefined {
  if (auth !== 'client-credentials' && auth !== 'token-exchange') {
    const given = OAUTH_OPTIONS.find((o) => options.has(o));
    if (given) bad(`${given}= is for auth=client-credentials and auth=token-exchange routes`);
    return undefined;
  }
  if (remote.protocol === 'tls:') bad(`auth=${auth} needs an HTTP route: a tls:// remote carries bytes`);
  const endpointText = options.get('token-endpoint');
  if (!endpointText) bad(`auth=${auth} needs token-endpoint=URL: where the access tokens come from`);
  let tokenEndpoint: URL;
  try {
    tokenEndpoint = new URL(endpointText as string);
  } catch {
    return bad(
      `token-endpoint=${endpointText} is not a URL; write e.g. https://keycloak.example/realms/r/protocol/openid-connect/token`,
    );
  }
  if (
    tokenEndpoint.protocol !== 'https:' &&
    !(tokenEndpoint.protocol === 'http:' && isLoopbackIp(tokenEndpoint.hostname))
  )
    bad(`token-endpoint=${endpointText}: client credentials cross the network only over https://`);
  const clientId = options.get('client-id');
  if (!clientId) bad(`auth=${auth} needs client-id=: who the sidecar is to the token endpoint`);
  const clientAuth = options.get('client-auth') ?? (options.has('client-secret-file') ? 'secret' : undefined);
  if (clientAuth !== 'secret' && clientAuth !== 'private-key-jwt' && clientAuth !== 'mtls')
    bad(
      'say how the sidecar authenticates to the token endpoint: client-secret-file=PATH, client-auth=private-key-jwt (our JWT-SVID) or client-auth=mtls (our SVID)',
    );
  if (clientAuth === 'secret' && !options.has('client-secret-file'))
    bad('client-auth=secret needs client-secret-file=PATH (a secret is never written in a flag)');
  if (clientAuth !== 'secret' && options.has('client-secret-file'))
    bad(`client-secret-file= is for client-auth=secret, not client-auth=${clientAuth}`);
  if (clientAuth === 'mtls' && tokenEndpoint.protocol !== 'https:')
    bad('client-auth=mtls needs an https:// token endpoint');
  // Without a target the authorization server picks its default audience, often broad: the exchanged token
  // could then be replayed at another route's remote.
  if (auth === 'token-exchange' && !options.has('audience') && !options.has('resource'))
    bad('auth=token-exchange needs audience= or resource=: whom the exchanged token is for');
  const scope = options.get('scope')?.replaceAll('+', ' ');
  if (scope !== undefined && !/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/.test(scope))
    bad(`scope=${options.get('scope')}: scopes are printable words joined by + (RFC 6749 §3.3)`);
  return Object.freeze({
    tokenEndpoint,
    clientId: clientId as string,
    clientAuth,
    clientSecretFile: options.get('client-secret-file'),
    scope,
    resource: options.get('resource'),
  });
}

function nameValue(value: string, flag: string, example: string): [string, string] {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) invalid(`--${flag} ${JSON.stringify(value)}: expected ${example}`);
  return [value.slice(0, eq), value.slice(eq + 1)];
}

/** The flags that configure bearer tokens: in mTLS mode, each needs --jwt-audience. */
const TOKEN_FLAGS = [
  'jwt-audience',
  'jwt-bundle-file',
  'jwt-issuer',
  'jwt-jwks',
  'jwt-ca-file',
  'allow-issuer',
  'jwt-forward-token',
  'jwt-issuer-header',
  'jwt-subject-header',
  'k8s-token-review',
  'k8s-token-review-only',
  'k8s-api-server',
  'k8s-token-file',
  'k8s-token-review-interval',
  'k8s-api-ca-file',
  'k8s-trust-domain',
  'max-token-lifetime',
  'jwt-replay-cache',
] as const;

function parseAuth(raw: RawOptions): AuthConfig {
  const mode = raw['auth-mode'] ?? DEFAULTS['auth-mode'].value;
  if (mode !== 'mtls' && mode !== 'jwt') invalid(`--auth-mode ${JSON.stringify(mode)}: use mtls or jwt`);
  if (mode === 'mtls') {
    if (raw['jwt-transport'] !== undefined)
      invalid('--jwt-transport needs --auth-mode jwt (mTLS mode always serves TLS and asks for a certificate)');
    // mTLS mode takes bearer tokens as well once it knows their audience.
    if ((raw['jwt-audience'] ?? []).length === 0) {
      const given = TOKEN_FLAGS.find((f) => {
        const value = raw[f];
        return value !== undefined && value !== false && !(Array.isArray(value) && value.length === 0);
      });
      if (given)
        invalid(
          `--${given} needs --jwt-audience: mTLS mode accepts bearer tokens as well when it knows their audience (or use --auth-mode jwt)`,
        );
      return { mode, transport: 'mtls', tokens: undefined };
    }
    return { mode, transport: 'mtls', tokens: parseTokens(raw) };
  }
  const transport = raw['jwt-transport'] ?? DEFAULTS['jwt-transport'].value;
  if (transport !== 'plain' && transport !== 'tls' && transport !== 'mtls')
    invalid(
      `--jwt-transport ${JSON.stringify(transport)}: use plain, tls (our SVID) or mtls (our SVID, and the caller's certificate when it has one)`,
    );
  return { mode, transport, tokens: parseTokens(raw) };
}

/** The bearer-token flags (`--jwt-*`, `--k8s-*`, `--allow-issuer`). */
function parseTokens(raw: RawOptions): TokenAuthConfig {
  const audience = raw['jwt-audience'] ?? [];
  if (audience.length === 0) {
    throw new SidecarError(
      'ERR_CONFIG_MISSING',
      '--jwt-audience is required in JWT mode: the audience this service accepts tokens for, e.g. --jwt-audience orders (repeatable)',
    );
  }
  const issuers = new Map<
    string,
    { name: string; issuer: string; kind: 'oidc' | 'k8s'; jwks?: { url?: string; file?: string } }
  >();
  for (const value of raw['jwt-issuer'] ?? []) {
    const [name, issuer] = nameValue(value, 'jwt-issuer', 'NAME=ISSUER_URL, e.g. k8s=https://kubernetes.default.svc');
    if (!ISSUER_NAME_FORMAT.test(name))
      invalid(`--jwt-issuer ${value}: the name must be lowercase letters, digits and -`);
    if (!issuer.startsWith('https://')) invalid(`--jwt-issuer ${value}: the issuer must be an https:// URL`);
    if (issuers.has(name)) invalid(`--jwt-issuer: "${name}" is given twice`);
    // Two names for one issuer would make its tokens ambiguous (and one of them could be `k8s`).
    if ([...issuers.values()].some((i) => i.issuer === issuer))
      invalid(`--jwt-issuer ${value}: issuer ${issuer} is given twice`);
    // Only the issuer named exactly `k8s` maps subjects to SPIFFE IDs: one cluster, one trust domain.
    issuers.set(name, { name, issuer, kind: name === 'k8s' ? 'k8s' : 'oidc' });
  }
  for (const value of raw['jwt-jwks'] ?? []) {
    const [name, where] = nameValue(value, 'jwt-jwks', 'NAME=URL or NAME=FILE');
    const issuer = issuers.get(name);
    if (!issuer) invalid(`--jwt-jwks ${value}: no --jwt-issuer named "${name}"`);
    // A URL of another scheme (http://, or a typo of https) is refused, not read as a file of that name.
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(where)?.[1]?.toLowerCase();
    if (scheme !== undefined && scheme !== 'https')
      invalid(`--jwt-jwks ${value}: keys are fetched over https:// only (or give a FILE path)`);
    (issuer as { jwks?: object }).jwks =
      scheme === 'https' ? { url: `https${where.slice('https'.length)}` } : { file: where };
  }
  const allowIssuers = raw['allow-issuer'] ?? [];
  for (const name of allowIssuers)
    if (!issuers.has(name)) invalid(`--allow-issuer ${name}: no --jwt-issuer named "${name}"`);
  let k8sTrustDomain: string;
  try {
    k8sTrustDomain = parseTrustDomain(raw['k8s-trust-domain'] ?? DEFAULTS['k8s-trust-domain'].value);
  } catch (err) {
    throw new SidecarError((err as SidecarError).code, `--k8s-trust-domain: ${(err as Error).message}`, { cause: err });
  }
  const bundleFiles = (raw['jwt-bundle-file'] ?? []).map((value) => {
    const [td, file] = nameValue(value, 'jwt-bundle-file', 'TRUST_DOMAIN=FILE');
    try {
      return { trustDomain: parseTrustDomain(td), file };
    } catch (err) {
      return invalid(`--jwt-bundle-file ${value}: ${(err as Error).message}`);
    }
  });
  if (issuers.has('k8s') && bundleFiles.some((b) => b.trustDomain === k8sTrustDomain)) {
    invalid(
      `--k8s-trust-domain ${k8sTrustDomain}: a JWT-SVID trust domain too; Kubernetes service accounts need a trust domain of their own`,
    );
  }
  const issuerHeader = parseHeaderName(
    raw['jwt-issuer-header'] ?? DEFAULTS['jwt-issuer-header'].value,
    '--jwt-issuer-header',
  );
  const subjectHeader = parseHeaderName(
    raw['jwt-subject-header'] ?? DEFAULTS['jwt-subject-header'].value,
    '--jwt-subject-header',
  );
  // An issuer or subject written under an identity header name would be a spoofed identity.
  const identityNames = new Set([
    ...(raw['identity-header'] ?? DEFAULTS['identity-header'].value).map((h) => h.toLowerCase()),
    'x-forwarded-client-cert',
  ]);
  if (issuerHeader === subjectHeader || identityNames.has(issuerHeader) || identityNames.has(subjectHeader)) {
    invalid('--jwt-issuer-header and --jwt-subject-header must differ from each other and from the identity headers');
  }
  return {
    audience: Object.freeze([...audience]),
    bundleFiles: Object.freeze(bundleFiles),
    issuers: Object.freeze([...issuers.values()].map((i) => Object.freeze(i))),
    k8sTrustDomain,
    caFile: raw['jwt-ca-file'],
    allowIssuers: Object.freeze([...allowIssuers]),
    forwardToken: raw['jwt-forward-token'] ?? DEFAULTS['jwt-forward-token'].value,
    issuerHeader,
    subjectHeader,
    tokenReview: parseTokenReview(raw, [...issuers.values()]),
    maxTokenLifetimeMs:
      raw['max-token-lifetime'] === undefined
        ? undefined
        : parseDuration(raw['max-token-lifetime'], '--max-token-lifetime'),
    replayCacheSize:
      raw['jwt-replay-cache'] === undefined
        ? undefined
        : parseCount(raw['jwt-replay-cache'], '--jwt-replay-cache', 1, 10_000_000),
  };
}

/**
 * RFC 6750 §5.3: bearer tokens only over TLS. JWT mode over plain HTTP is for a listener the network cannot
 * reach (loopback, e.g. behind a TLS-terminating proxy in the same pod); anywhere else it needs an explicit
 * `--unsafe-plaintext-jwt`.
 */
function checkPlaintextJwt(raw: RawOptions, auth: AuthConfig, inbound: boolean, host: string): void {
  const plain = auth.transport === 'plain' && inbound;
  if (raw['unsafe-plaintext-jwt'] && !plain)
    invalid('--unsafe-plaintext-jwt is for --auth-mode jwt with --jwt-transport plain');
  if (plain && !isLoopback(host) && !raw['unsafe-plaintext-jwt']) {
    throw new SidecarError(
      'ERR_UNSAFE_LISTEN',
      `--listen ${host}: JWT mode over plain HTTP would take bearer tokens in clear text from the network; use --jwt-transport tls (our SVID), listen on 127.0.0.1, or add --unsafe-plaintext-jwt if a TLS proxy in front of the sidecar really protects them`,
    );
  }
}

/** `--policy-file`, `--policy-mode` and `--api-keys-file`, and how they combine with the allow flags. */
function parsePolicyFlags(raw: RawOptions, inbound: boolean): Config['policy'] {
  const file = raw['policy-file'];
  const mode = raw['policy-mode'];
  if (mode !== undefined && mode !== 'enforce' && mode !== 'dry-run')
    invalid(`--policy-mode ${JSON.stringify(mode)}: use enforce or dry-run`);
  if (mode !== undefined && file === undefined)
    invalid('--policy-mode needs --policy-file: dry-run applies to the rules of a policy file');
  if (raw['api-keys-file'] !== undefined) {
    if (!inbound) invalid('--api-keys-file needs an inbound listener (--upstream)');
    if (file === undefined && !raw['allow-any'])
      invalid('--api-keys-file needs --policy-file: API key callers are named in its rules (callers.api_keys)');
  }
  if (file === undefined) return undefined;
  if (file === '') invalid('--policy-file: give the path of a YAML or JSON policy file');
  if (!inbound) invalid('--policy-file needs an inbound listener (--upstream)');
  if (raw.allow?.length || raw['allow-any'] || raw['allow-issuer']?.length)
    invalid(
      '--policy-file replaces --allow, --allow-any and --allow-issuer: write them as rules in the file (a rule without path or methods matches any request)',
    );
  return Object.freeze({ file, dryRun: (mode ?? DEFAULTS['policy-mode'].value) === 'dry-run' });
}

/** Validates raw options into the one Config. Throws SidecarError on the first problem. */
export function buildConfig(raw: RawOptions): Config {
  const auth = parseAuth(raw);
  const tcp = parseTcpMode(raw, auth);
  const workers = parseWorkers(raw.workers ?? DEFAULTS.workers.value);
  // Each worker would remember its own jtis, and a replay on a new connection would reach another worker.
  if (auth.tokens?.replayCacheSize !== undefined && workers > 1)
    invalid(
      `--jwt-replay-cache with --workers ${workers}: each worker would remember alone, and a token could be replayed once per worker; use --workers 1 where tokens are one-time`,
    );
  const outbound = (raw.outbound ?? []).map(parseOutbound);
  // An outbound-only sidecar (the calling side) needs no app behind it and no allow rules.
  const inbound = raw.upstream !== undefined || outbound.length === 0;
  if (!inbound && (raw.allow?.length || raw['allow-any']))
    invalid('--allow and --allow-any need an inbound listener (--upstream)');
  const policy = parsePolicyFlags(raw, inbound);
  // auth=forward passes on only a token this sidecar verified: it needs the token flags, and a second look at
  // a one-time token would be its replay.
  const forward = (raw.outbound ?? []).find((_, i) => outbound[i].auth === 'forward');
  if (forward !== undefined && !auth.tokens)
    invalid(
      `--outbound ${JSON.stringify(forward)}: auth=forward passes on the caller's token only once this sidecar verified it; add --jwt-audience and the token flags`,
    );
  if (forward !== undefined && auth.tokens?.replayCacheSize !== undefined)
    invalid(
      `--outbound ${JSON.stringify(forward)}: auth=forward with --jwt-replay-cache: a one-time token cannot be verified a second time; use auth=token-exchange`,
    );
  const needsIdentityForOutbound = outbound.some(
    (r) =>
      r.remote.protocol === 'https:' ||
      r.remote.protocol === 'tls:' ||
      (r.auth === 'jwt' && !r.tokenFile) ||
      r.oauth?.clientAuth === 'mtls',
  );
  // JWT mode over plain HTTP needs no X.509 identity of its own; every other mode does.
  const needsSource = (inbound && auth.transport !== 'plain') || needsIdentityForOutbound;
  const anySource =
    FILE_FLAGS.some((f) => raw[f]) ||
    raw['workload-api-socket'] !== undefined ||
    raw.spiffeEndpointSocket !== undefined;
  // A JWT route without token-file= sends a JWT-SVID, which only the Workload API mints: in file mode (or
  // with no identity at all) it could never send a token, and every request would get 503 no_token.
  const tokenless = (raw.outbound ?? []).find((_, i) => outbound[i].auth === 'jwt' && !outbound[i].tokenFile);
  const spire = !!raw['workload-api-socket'] || (!FILE_FLAGS.some((f) => raw[f]) && !!raw.spiffeEndpointSocket);
  // A JWT-SVID as client assertion comes from the Workload API too.
  const assertionRoute = (raw.outbound ?? []).find((_, i) => outbound[i].oauth?.clientAuth === 'private-key-jwt');
  if (assertionRoute !== undefined && !spire)
    invalid(
      `--outbound ${JSON.stringify(assertionRoute)}: client-auth=private-key-jwt signs with a JWT-SVID from the Workload API; add --workload-api-socket (SPIRE mode), or use client-secret-file=`,
    );
  if (tokenless !== undefined && !spire)
    invalid(
      `--outbound ${JSON.stringify(tokenless)}: auth=jwt without token-file= sends a JWT-SVID from the Workload API; add --workload-api-socket (SPIRE mode), or token-file=PATH with the token to send`,
    );
  const source = needsSource || anySource ? parseSource(raw) : undefined;
  if (
    auth.tokens &&
    auth.tokens.bundleFiles.length === 0 &&
    auth.tokens.issuers.length === 0 &&
    source?.kind !== 'workload-api'
  ) {
    throw new SidecarError(
      'ERR_CONFIG_MISSING',
      'no keys to verify bearer tokens with: give --jwt-bundle-file TD=FILE, --jwt-issuer NAME=URL, or SPIRE mode (--workload-api-socket) for JWT-SVID bundles',
    );
  }
  const allow = raw.allow ?? [];
  const allowAny = raw['allow-any'] ?? DEFAULTS['allow-any'].value;
  // `--allow-issuer` is an allow rule too (every valid token of that issuer).
  const allowsIssuers = (auth.tokens?.allowIssuers.length ?? 0) > 0;
  if (inbound && allow.length === 0 && !allowAny && !policy && !allowsIssuers) {
    throw new SidecarError(
      'ERR_NO_ALLOW_RULE',
      'no --allow rule: the sidecar denies everyone by default; add --allow spiffe://example.org/ns/prod/sa/client (repeatable), --allow-issuer NAME (every token of that issuer), or --allow-any to admit every authenticated peer',
    );
  }
  if (allow.length > 0 && allowAny)
    invalid('--allow and --allow-any exclude each other: --allow-any admits every authenticated peer');
  let allowRules: IdMatcher;
  try {
    allowRules = compileAllowRules(allow);
  } catch (err) {
    throw new SidecarError((err as SidecarError).code, `--allow: ${(err as Error).message}`, { cause: err });
  }
  const listen = parseHostPort(raw.listen ?? DEFAULTS.listen.value, '--listen');
  checkPlaintextJwt(raw, auth, inbound, listen.host);
  const identityHeaders = Object.freeze(
    parseIdentityHeaders(raw['identity-header'] ?? DEFAULTS['identity-header'].value),
  );
  const logLevel = (raw['log-level'] ?? DEFAULTS['log-level'].value) as LogLevel;
  if (!LOG_LEVELS.includes(logLevel))
    invalid(`--log-level ${JSON.stringify(logLevel)}: use one of ${LOG_LEVELS.join(', ')}`);

  return Object.freeze({
    auth,
    outbound: Object.freeze(outbound),
    inbound,
    listen: Object.freeze(listen),
    protocol: tcp ? 'tcp' : 'http',
    workers,
    upstreamProtocol: parseUpstreamProtocol(raw['upstream-protocol'], tcp !== undefined),
    http1Engine: parseHttpEngine(raw['http-engine'], tcp !== undefined),
    tcp,
    upstream:
      inbound && !tcp
        ? parseUpstream(raw.upstream, raw['unsafe-upstream'] ?? DEFAULTS['unsafe-upstream'].value)
        : new URL('http://127.0.0.1:0'),
    source,
    allow: Object.freeze([...allow]),
    allowRules,
    allowAny,
    policy,
    apiKeysFile: raw['api-keys-file'],
    apiKeys: parseApiKeyFlags(raw, identityHeaders),
    rateLimitStore: parseRateLimitStoreFlags(raw, policy !== undefined),
    identityHeaders,
    ...parseAppHeaders(raw, auth, identityHeaders, source !== undefined),
    xfcc: raw.xfcc ?? DEFAULTS.xfcc.value,
    logLevel,
    watch: raw.watch ?? DEFAULTS.watch.value,
    reloadIntervalMs: raw['reload-interval'] ? parseReloadInterval(raw['reload-interval']) : undefined,
    logFormat: parseLogFormat(raw['log-format']),
    admin: Object.freeze(
      parseHostPort(raw['admin-listen'] ?? DEFAULTS['admin-listen'].value, '--admin-listen', '127.0.0.1'),
    ),
    readyRequiresUpstream: raw['ready-requires-upstream'] ?? DEFAULTS['ready-requires-upstream'].value,
    drainTimeoutMs: parseDuration(raw['drain-timeout'] ?? DEFAULTS['drain-timeout'].value, '--drain-timeout'),
    limits: Object.freeze(parseLimits(raw, workers)),
  });
}
