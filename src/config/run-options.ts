// The flag table of `spiffe-sidecar run`: one OptionSpec per RawOptions key. The command line, the
// environment (SPIFFE_SIDECAR_*), `--config` files and `--help` all read it; its defaults are
// in ./defaults.ts (--help requires one for every flag).
import type { RawOptions } from '../config.js';
import type { OptionSpec } from './option-spec.js';

/** Every key of RawOptions that is a flag (SPIFFE_ENDPOINT_SOCKET arrives from the environment as-is). */
export type RunFlag = Exclude<keyof RawOptions, 'spiffeEndpointSocket'>;

export const RUN_OPTIONS: Readonly<Record<RunFlag, OptionSpec>> = {
  listen: { type: 'string', value: 'HOST:PORT', help: 'where to accept mTLS connections' },
  upstream: {
    type: 'string',
    value: 'URL',
    help: 'the app, e.g. http://127.0.0.1:8080 (loopback unless --unsafe-upstream)',
  },
  'unsafe-upstream': { type: 'boolean', help: 'allow an upstream that is not on loopback' },
  protocol: { type: 'string', value: 'P', help: 'http: HTTP/1.1 and HTTP/2; tcp: relay bytes, L4' },
  workers: { type: 'string', value: 'N', help: 'processes serving the listeners, or auto: one per core' },
  'upstream-protocol': {
    type: 'string',
    value: 'P',
    help: 'how the app is reached: h1, or h2c: cleartext HTTP/2 such as gRPC',
  },
  'http-engine': {
    type: 'string',
    value: 'E',
    help: 'HTTP/1.1 callers: raw (strict parser on the socket, fast) or node (node:http)',
  },
  'proxy-protocol': { type: 'string', value: 'v2', help: 'TCP mode: send a PROXY v2 header with the SPIFFE ID' },
  'workload-api-socket': {
    type: 'string',
    value: 'ADDR',
    help: 'SPIRE mode: the Workload API, unix:///path or tcp://IP:PORT; else $SPIFFE_ENDPOINT_SOCKET',
  },
  'svid-hint': { type: 'string', value: 'HINT', help: 'SPIRE mode: use the SVID with this hint' },
  'mtls-cert-file': {
    type: 'string',
    value: 'FILE',
    help: 'our X509-SVID, leaf first then intermediates (PEM; tls.crt)',
  },
  'mtls-key-file': { type: 'string', value: 'FILE', help: 'its private key (PEM; tls.key)' },
  'mtls-ca-file': { type: 'string', value: 'FILE', help: 'the trust bundle of our own trust domain (PEM; ca.crt)' },
  'federated-bundle': {
    type: 'string',
    multiple: true,
    value: 'TD=FILE',
    help: 'trust bundle of another trust domain (repeatable)',
  },
  allow: { type: 'string', multiple: true, value: 'RULE', help: 'SPIFFE ID rule of callers to admit (repeatable)' },
  'allow-any': { type: 'boolean', help: 'admit every authenticated peer (explicit opt-in)' },
  'identity-header': {
    type: 'string',
    multiple: true,
    value: 'NAME',
    help: 'header carrying the verified ID (repeatable)',
  },
  xfcc: { type: 'boolean', help: 'set x-forwarded-client-cert' },
  'log-level': { type: 'string', value: 'LEVEL', help: 'trace, debug, info, warn, error, fatal or silent' },
  'admin-listen': {
    type: 'string',
    value: 'HOST:PORT',
    help: 'health, readiness, metrics, certs',
  },
  'ready-requires-upstream': { type: 'boolean', help: '/readyz also requires the app to accept connections' },
  'drain-timeout': { type: 'string', value: 'DURATION', help: 'SIGTERM: time for in-flight requests' },
  'handshake-timeout': { type: 'string', value: 'DURATION', help: 'TLS handshake limit' },
  'header-timeout': { type: 'string', value: 'DURATION', help: 'request headers limit' },
  'idle-timeout': { type: 'string', value: 'DURATION', help: 'idle keep-alive connections close' },
  'upstream-timeout': { type: 'string', value: 'DURATION', help: 'app response headers limit, else 504' },
  'max-header-bytes': { type: 'string', value: 'N', help: 'request line + headers, else 431' },
  'max-header-count': { type: 'string', value: 'N', help: 'request header fields, else 431' },
  'request-body-timeout': {
    type: 'string',
    value: 'DURATION',
    help: 'a request body that stalls this long gets 408',
  },
  'request-body-min-rate': {
    type: 'string',
    value: 'N',
    help: 'bytes/s a request body must average after 5s, else 408; 0: no minimum',
  },
  'response-write-timeout': {
    type: 'string',
    value: 'DURATION',
    help: 'a caller that reads no response byte this long is cut',
  },
  'tunnel-idle-timeout': {
    type: 'string',
    value: 'DURATION',
    help: 'a WebSocket with no traffic this long is closed',
  },
  'max-connections': { type: 'string', value: 'N', help: 'open connections, more are closed' },
  'log-format': { type: 'string', value: 'FORMAT', help: 'json or pretty' },
  config: { type: 'string', value: 'FILE', help: 'YAML file with any of these flags; flags and env override it' },
  outbound: {
    type: 'string',
    multiple: true,
    value: 'ROUTE',
    help: 'egress: the app calls LISTEN, the sidecar calls the remote with our identity (repeatable; forms below)',
  },
  'auth-mode': { type: 'string', value: 'MODE', help: 'mtls or jwt: how callers authenticate' },
  'jwt-transport': {
    type: 'string',
    value: 'T',
    help: "JWT mode: plain HTTP, tls with our SVID, or mtls (also the caller's certificate, if it has one)",
  },
  'unsafe-plaintext-jwt': {
    type: 'boolean',
    help: 'JWT mode: allow plain HTTP on a --listen that is not loopback',
  },
  'jwt-audience': {
    type: 'string',
    multiple: true,
    value: 'AUD',
    help: 'accepted token audience (repeatable); in mTLS mode it turns bearer tokens on as well',
  },
  'jwt-bundle-file': {
    type: 'string',
    multiple: true,
    value: 'TD=FILE',
    help: 'JWT-SVID keys of a trust domain (JWKS or SPIFFE bundle)',
  },
  'jwt-issuer': {
    type: 'string',
    multiple: true,
    value: 'NAME=URL',
    help: 'an OIDC issuer (k8s: Kubernetes service accounts)',
  },
  'jwt-jwks': {
    type: 'string',
    multiple: true,
    value: 'NAME=URL|FILE',
    help: "an issuer's keys, instead of OIDC discovery",
  },
  'jwt-ca-file': { type: 'string', value: 'FILE', help: 'extra CA for fetching issuer keys over HTTPS' },
  'k8s-trust-domain': {
    type: 'string',
    value: 'TD',
    help: 'trust domain of Kubernetes service accounts',
  },
  'allow-issuer': {
    type: 'string',
    multiple: true,
    value: 'NAME',
    help: 'admit every valid token of this issuer (repeatable)',
  },
  'jwt-forward-token': { type: 'boolean', help: 'pass the verified Authorization header on to the app' },
  'jwt-issuer-header': {
    type: 'string',
    value: 'NAME',
    help: 'header with the token issuer name',
  },
  'jwt-subject-header': {
    type: 'string',
    value: 'NAME',
    help: 'header with the token subject',
  },
  'k8s-token-review': { type: 'boolean', help: 'confirm Kubernetes tokens with the API server (TokenReview)' },
  'k8s-api-server': {
    type: 'string',
    value: 'URL',
    help: 'the API server for TokenReview',
  },
  'k8s-token-file': {
    type: 'string',
    value: 'FILE',
    help: 'our service-account token for TokenReview',
  },
  'k8s-token-review-interval': {
    type: 'string',
    value: 'DURATION',
    help: 'review a token again after this',
  },
  'k8s-token-review-only': {
    type: 'boolean',
    help: 'verify service-account tokens by TokenReview alone (no issuer keys; implies --k8s-token-review)',
  },
  'k8s-api-ca-file': { type: 'string', value: 'FILE', help: "the API server's CA, for TokenReview" },
  'max-token-lifetime': {
    type: 'string',
    value: 'DURATION',
    help: 'refuse tokens whose exp - iat is longer (e.g. 24h)',
  },
  'jwt-replay-cache': {
    type: 'string',
    value: 'N',
    help: 'admit each token jti once; remember the last N (per replica)',
  },
  'claim-header': {
    type: 'string',
    multiple: true,
    value: 'CLAIM=HEADER',
    help: 'pass a verified claim to the app (repeatable; realm_access.roles=x-roles)',
  },
  'identity-assertion': {
    type: 'boolean',
    help: 'sign the verified caller into a short-lived JWT for the app (JWKS on the admin listener)',
  },
  'identity-assertion-header': { type: 'string', value: 'NAME', help: 'the header that carries it' },
  'identity-assertion-audience': { type: 'string', value: 'AUD', help: 'its aud claim' },
  'identity-assertion-ttl': { type: 'string', value: 'DURATION', help: 'its lifetime' },
  'policy-file': {
    type: 'string',
    value: 'FILE',
    help: 'per-route rules over callers (YAML or JSON; hot-reloaded); replaces --allow',
  },
  'policy-mode': { type: 'string', value: 'MODE', help: 'enforce or dry-run: log denials, let them pass' },
  'api-keys-file': {
    type: 'string',
    value: 'FILE',
    help: 'static API keys by SHA-256 (made by apikey new; hot-reloaded)',
  },
  'api-key-header': { type: 'string', value: 'NAME', help: 'the header callers send their API key in' },
  'api-key-prefix': { type: 'string', value: 'PREFIX', help: 'what every API key starts with (e.g. gak_)' },
  'api-key-unused-after': {
    type: 'string',
    value: 'DURATION',
    help: 'a key not used for this long is counted as unused (metric, /api-keys)',
  },
  'rate-limit-store': {
    type: 'string',
    value: 'URL',
    help: 'count rate limits in a shared Redis: redis://HOST:PORT[/DB] or rediss:// (TLS, our SVID)',
  },
  'rate-limit-store-password-file': { type: 'string', value: 'FILE', help: 'the Redis password (AUTH)' },
  'rate-limit-store-ca-file': { type: 'string', value: 'FILE', help: "rediss://: the CAs of the store's certificate" },
  'rate-limit-store-timeout': {
    type: 'string',
    value: 'DURATION',
    help: 'the longest a request waits on the store',
  },
  'rate-limit-store-failure': {
    type: 'string',
    value: 'MODE',
    help: 'while the store is down or slow: local (per-process buckets), allow or deny (503)',
  },
  'rate-limit-replicas': {
    type: 'string',
    value: 'N',
    help: 'replicas sharing the store: local divides limits by N × workers',
  },
  watch: { type: 'boolean', help: 'reload the SVID and bundles when their files change' },
  'reload-interval': {
    type: 'string',
    value: 'DURATION',
    help: 'also re-read them this often, e.g. 5m',
  },
};
