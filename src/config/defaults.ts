// The default of every flag of every command (`run`, `inject-webhook`, `certs`, `policy check`, `apikey new`),
// as data: the parsers, `--help` and the README test all read this one table, so what the help promises is
// what the code does. Nothing here can fail.

/**
 * A flag's default. `value` is what the code uses when the flag is absent, written as on the command line
 * (a string, a list for a repeatable flag, a boolean for a switch), so it goes through the flag's own
 * parser. A flag without such a value has `shown` instead: what its absence means, in words (Markdown).
 */
export type FlagDefault =
  | { readonly value: string | boolean | readonly string[]; readonly shown?: undefined }
  | { readonly value?: undefined; readonly shown: string };

function freeze<T extends Record<string, FlagDefault>>(table: T): T {
  for (const entry of Object.values(table)) {
    if (Array.isArray(entry.value)) Object.freeze(entry.value);
    Object.freeze(entry);
  }
  return Object.freeze(table);
}

const NONE = { shown: 'none' } as const;
const REQUIRED = { shown: '(required)' } as const;
const OFF = { value: false } as const;

/** `spiffe-sidecar run`: one entry per flag, in the order of the README's table. */
export const RUN_DEFAULTS = freeze({
  listen: { value: '0.0.0.0:8443' },
  outbound: NONE,
  upstream: REQUIRED,
  'unsafe-upstream': OFF,
  protocol: { value: 'http' },
  'proxy-protocol': { shown: 'off' },
  workers: { value: '1' },
  'upstream-protocol': { value: 'h1' },
  'http-engine': { value: 'raw' },
  // SPIFFE_ENDPOINT_SOCKET, when set, stands in for the flag (Workload Endpoint §4): an environment
  // variable, not a default.
  'workload-api-socket': NONE,
  'svid-hint': { shown: 'the first SVID' },
  'mtls-cert-file': REQUIRED,
  'mtls-key-file': REQUIRED,
  'mtls-ca-file': REQUIRED,
  'federated-bundle': NONE,
  allow: NONE,
  'allow-any': OFF,
  'policy-file': NONE,
  'policy-mode': { value: 'enforce' },
  'api-keys-file': NONE,
  'api-key-header': { value: 'x-api-key' },
  'api-key-prefix': { value: 'sk_' },
  'api-key-unused-after': { value: '30d' },
  'rate-limit-store': { shown: 'none: each process counts alone' },
  'rate-limit-store-password-file': NONE,
  'rate-limit-store-ca-file': { shown: 'the system CAs' },
  // Envoy's global rate limit service defaults to 20 ms; a loaded 2-core pod needs some margin.
  'rate-limit-store-timeout': { value: '50ms' },
  'rate-limit-store-failure': { value: 'local' },
  'rate-limit-replicas': { value: '1' },
  'identity-header': { value: ['x-spiffe-id'] },
  xfcc: { value: true },
  'log-level': { value: 'info' },
  watch: { value: true },
  'reload-interval': { shown: 'never' },
  'admin-listen': { value: '127.0.0.1:15000' },
  'ready-requires-upstream': OFF,
  'drain-timeout': { value: '30s' },
  // Timeouts as nginx has them (client_body_timeout, send_timeout: 60 s); the tunnel idle timeout as
  // Envoy's stream_idle_timeout (5 min), long enough for WebSocket pings.
  'handshake-timeout': { value: '10s' },
  'header-timeout': { value: '10s' },
  'idle-timeout': { value: '60s' },
  'upstream-timeout': { value: '60s' },
  'request-body-timeout': { value: '60s' },
  // Kestrel's MinRequestBodyDataRate: slow enough for any real client, too fast for a trickle.
  'request-body-min-rate': { value: '240' },
  'response-write-timeout': { value: '60s' },
  'tunnel-idle-timeout': { value: '5m' },
  'max-header-bytes': { value: '16384' },
  'max-header-count': { value: '100' },
  'max-connections': { value: '10000' },
  'log-format': { value: 'json' },
  config: NONE,
  'auth-mode': { value: 'mtls' },
  'jwt-transport': { value: 'plain' },
  'unsafe-plaintext-jwt': OFF,
  'jwt-audience': { shown: '(required in JWT mode)' },
  'jwt-bundle-file': NONE,
  'jwt-issuer': NONE,
  'jwt-jwks': { shown: 'OIDC discovery' },
  'jwt-ca-file': { shown: 'system roots' },
  'k8s-trust-domain': { value: 'cluster.local' },
  'allow-issuer': NONE,
  'jwt-forward-token': OFF,
  'jwt-issuer-header': { value: 'x-jwt-issuer' },
  'jwt-subject-header': { value: 'x-jwt-subject' },
  'k8s-token-review': OFF,
  // The in-cluster API server, not the issuer URL: that may be a public OIDC host (EKS, GKE, AKS), and
  // TokenReview sends our own token and the caller's.
  'k8s-api-server': { value: 'https://kubernetes.default.svc' },
  'k8s-token-file': { value: '/var/run/secrets/kubernetes.io/serviceaccount/token' },
  'k8s-token-review-interval': { value: '1m' },
  'k8s-token-review-only': OFF,
  // The in-cluster CA: the API server's certificate is not signed by a public CA.
  'k8s-api-ca-file': { value: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt' },
  'max-token-lifetime': { shown: 'no limit' },
  'jwt-replay-cache': { shown: 'off' },
  'claim-header': NONE,
  'identity-assertion': OFF,
  'identity-assertion-header': { value: 'x-identity-assertion' },
  'identity-assertion-audience': { shown: 'our SPIFFE ID' },
  'identity-assertion-ttl': { value: '60s' },
} as const);

/** `spiffe-sidecar inject-webhook`. */
export const INJECT_WEBHOOK_DEFAULTS = freeze({
  listen: { value: '0.0.0.0:9443' },
  'tls-cert-file': REQUIRED,
  'tls-key-file': REQUIRED,
  image: REQUIRED,
  'image-pull-policy': { value: 'IfNotPresent' },
  'default-mode': { value: 'spire' },
  'sidecar-port': { value: '8443' },
  'admin-port': { value: '15020' },
  'k8s-issuer': { value: 'https://kubernetes.default.svc.cluster.local' },
  'k8s-trust-domain': { value: 'cluster.local' },
  'k8s-token-audience': { shown: '`--k8s-issuer`' },
  'cpu-request': { value: '50m' },
  'memory-request': { value: '64Mi' },
  'memory-limit': { value: '256Mi' },
  'request-timeout': { value: '10s' },
  'log-level': { value: 'info' },
  'log-format': { value: 'json' },
} as const);

/** `spiffe-sidecar certs init`: a development CA. */
export const CERTS_INIT_DEFAULTS = freeze({
  'trust-domain': REQUIRED,
  out: REQUIRED,
  lifetime: { value: '365d' },
  force: OFF,
} as const);

/** `spiffe-sidecar certs issue`: an X509-SVID from that CA. */
export const CERTS_ISSUE_DEFAULTS = freeze({
  id: REQUIRED,
  ca: REQUIRED,
  out: REQUIRED,
  // As SPIRE's default X509-SVID TTL: short enough that a leaked dev key soon stops working.
  lifetime: { value: '1h' },
  force: OFF,
} as const);

/** `spiffe-sidecar policy check`. */
export const POLICY_CHECK_DEFAULTS = freeze({
  'policy-file': REQUIRED,
  id: NONE,
  issuer: NONE,
  claims: NONE,
  'api-key': NONE,
} as const);

/** `spiffe-sidecar apikey new`. */
export const APIKEY_NEW_DEFAULTS = freeze({
  name: REQUIRED,
  expires: { shown: 'never' },
  route: { shown: 'every route' },
  prefix: { value: 'sk_' },
} as const);

/** The default as the README's flag tables write it: a value in backticks, a switch on or off, or words. */
export function defaultInMarkdown(entry: FlagDefault): string {
  if (typeof entry.value === 'boolean') return entry.value ? 'on' : 'off';
  if (entry.value !== undefined)
    return [entry.value]
      .flat()
      .map((v) => `\`${v}\``)
      .join(', ');
  return entry.shown;
}

/** The default as `--help` writes it after a flag's text; empty when absence needs no words (none, off). */
export function defaultInHelp(flag: string, entry: FlagDefault | undefined): string {
  if (entry === undefined) return '';
  if (typeof entry.value === 'boolean') return entry.value ? `(default on; --no-${flag} to turn off)` : '';
  if (entry.value !== undefined) return `(default ${[entry.value].flat().join(', ')})`;
  const words = entry.shown.replaceAll('`', '');
  if (words === 'none' || words === 'off') return '';
  return words.startsWith('(') ? words : `(default: ${words})`;
}
