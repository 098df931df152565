// Command line and environment → raw options. The only reader of process.env: every `run` flag can also
// be set as SPIFFE_SIDECAR_<FLAG> (upper case, dashes as underscores; lists comma-separated), and a
// flag on the command line wins over the environment.
import { parseArgs } from 'node:util';
import type { RawOptions } from './config.js';
import { readConfigFile } from './config-file.js';
import { SidecarError } from './errors.js';
import { INJECT_WEBHOOK_OPTIONS } from './webhook/options.js';

export type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean; help: string; value?: string };

export const RUN_OPTIONS: Record<Exclude<keyof RawOptions, 'spiffeEndpointSocket'>, OptionSpec> = {
  listen: { type: 'string', value: 'HOST:PORT', help: 'where to accept mTLS connections (default 0.0.0.0:8443)' },
  upstream: {
    type: 'string',
    value: 'URL',
    help: 'the app, e.g. http://127.0.0.1:8080 (loopback unless --unsafe-upstream)',
  },
  'unsafe-upstream': { type: 'boolean', help: 'allow an upstream that is not on loopback' },
  protocol: { type: 'string', value: 'P', help: 'http (default): HTTP/1.1 and HTTP/2; tcp: relay bytes (L4)' },
  workers: { type: 'string', value: 'N', help: 'processes serving the listeners, or auto: one per core (default 1)' },
  'upstream-protocol': {
    type: 'string',
    value: 'P',
    help: 'how the app is reached: h1 (default) or h2c (cleartext HTTP/2, e.g. gRPC)',
  },
  'proxy-protocol': { type: 'string', value: 'v2', help: 'TCP mode: send a PROXY v2 header with the SPIFFE ID' },
  'workload-api-socket': {
    type: 'string',
    value: 'ADDR',
    help: 'SPIRE mode: the Workload API, unix:///path or tcp://IP:PORT (default $SPIFFE_ENDPOINT_SOCKET)',
  },
  'svid-hint': { type: 'string', value: 'HINT', help: 'SPIRE mode: use the SVID with this hint (default: the first)' },
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
    help: 'header carrying the verified ID (default x-spiffe-id; repeatable)',
  },
  xfcc: { type: 'boolean', help: 'set x-forwarded-client-cert (default on; --no-xfcc to turn off)' },
  'log-level': { type: 'string', value: 'LEVEL', help: 'trace, debug, info (default), warn, error, fatal or silent' },
  'admin-listen': {
    type: 'string',
    value: 'HOST:PORT',
    help: 'health, readiness, metrics, certs (default 127.0.0.1:15000)',
  },
  'ready-requires-upstream': { type: 'boolean', help: '/readyz also requires the app to accept connections' },
  'drain-timeout': { type: 'string', value: 'DURATION', help: 'SIGTERM: time for in-flight requests (default 30s)' },
  'handshake-timeout': { type: 'string', value: 'DURATION', help: 'TLS handshake limit (default 10s)' },
  'header-timeout': { type: 'string', value: 'DURATION', help: 'request headers limit (default 10s)' },
  'idle-timeout': { type: 'string', value: 'DURATION', help: 'idle keep-alive connections close (default 60s)' },
  'upstream-timeout': { type: 'string', value: 'DURATION', help: 'app response headers limit, else 504 (default 60s)' },
  'max-header-bytes': { type: 'string', value: 'N', help: 'request line + headers, else 431 (default 16384)' },
  'max-header-count': { type: 'string', value: 'N', help: 'request header fields, else 431 (default 100)' },
  'request-body-timeout': {
    type: 'string',
    value: 'DURATION',
    help: 'a request body that stalls this long gets 408 (default 60s)',
  },
  'request-body-min-rate': {
    type: 'string',
    value: 'N',
    help: 'bytes/s a request body must average after 5s, else 408; 0: none (default 240)',
  },
  'response-write-timeout': {
    type: 'string',
    value: 'DURATION',
    help: 'a caller that reads no response byte this long is cut (default 60s)',
  },
  'tunnel-idle-timeout': {
    type: 'string',
    value: 'DURATION',
    help: 'a WebSocket with no traffic this long is closed (default 5m)',
  },
  'max-connections': { type: 'string', value: 'N', help: 'open connections, more are closed (default 10000)' },
  'log-format': { type: 'string', value: 'FORMAT', help: 'json (default) or pretty' },
  config: { type: 'string', value: 'FILE', help: 'YAML file with any of these flags; flags and env override it' },
  outbound: {
    type: 'string',
    multiple: true,
    value: 'ROUTE',
    help: 'egress: LISTEN=REMOTE_URL,id=RULE[,auth=jwt,audience=AUD][,token-file=PATH] (repeatable)',
  },
  'auth-mode': { type: 'string', value: 'MODE', help: 'mtls (default) or jwt: how callers authenticate' },
  'jwt-transport': { type: 'string', value: 'T', help: 'JWT mode: plain (default) HTTP, or tls with our SVID' },
  'unsafe-plaintext-jwt': {
    type: 'boolean',
    help: 'JWT mode: allow plain HTTP on a --listen that is not loopback',
  },
  'jwt-audience': {
    type: 'string',
    multiple: true,
    value: 'AUD',
    help: 'JWT mode: accepted audience (required; repeatable)',
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
    help: 'trust domain of Kubernetes service accounts (default cluster.local)',
  },
  'allow-issuer': {
    type: 'string',
    multiple: true,
    value: 'NAME',
    help: 'admit every valid token of this issuer (repeatable)',
  },
  'jwt-forward-token': { type: 'boolean', help: 'JWT mode: pass the Authorization header on to the app' },
  'jwt-issuer-header': {
    type: 'string',
    value: 'NAME',
    help: 'header with the token issuer name (default x-jwt-issuer)',
  },
  'jwt-subject-header': {
    type: 'string',
    value: 'NAME',
    help: 'header with the token subject (default x-jwt-subject)',
  },
  'k8s-token-review': { type: 'boolean', help: 'confirm Kubernetes tokens with the API server (TokenReview)' },
  'k8s-api-server': {
    type: 'string',
    value: 'URL',
    help: 'the API server for TokenReview (default: the k8s issuer URL)',
  },
  'k8s-token-file': {
    type: 'string',
    value: 'FILE',
    help: 'our service-account token for TokenReview (in-cluster default)',
  },
  'k8s-token-review-interval': {
    type: 'string',
    value: 'DURATION',
    help: 'review a token again after this (default 1m)',
  },
  'policy-file': {
    type: 'string',
    value: 'FILE',
    help: 'per-route rules over callers (YAML or JSON; hot-reloaded); replaces --allow',
  },
  'policy-mode': { type: 'string', value: 'MODE', help: 'enforce (default) or dry-run: log denials, let them pass' },
  'api-keys-file': {
    type: 'string',
    value: 'FILE',
    help: 'static API keys by SHA-256 (made by apikey new; hot-reloaded)',
  },
  watch: { type: 'boolean', help: 'reload the SVID and bundles when their files change (default on; --no-watch)' },
  'reload-interval': {
    type: 'string',
    value: 'DURATION',
    help: 'also re-read them this often, e.g. 5m (default never)',
  },
};

export const CERTS_INIT_OPTIONS: Record<string, OptionSpec> = {
  'trust-domain': { type: 'string', value: 'TD', help: 'trust domain name, e.g. example.org' },
  out: { type: 'string', value: 'DIR', help: 'directory for ca.crt and ca.key' },
  lifetime: { type: 'string', value: 'DURATION', help: 'CA lifetime (default 365d)' },
};

export const CERTS_ISSUE_OPTIONS: Record<string, OptionSpec> = {
  id: { type: 'string', value: 'SPIFFE_ID', help: "the SVID's SPIFFE ID, e.g. spiffe://example.org/web" },
  ca: { type: 'string', value: 'DIR', help: 'directory made by certs init' },
  out: { type: 'string', value: 'DIR', help: 'directory for tls.crt, tls.key and ca.crt' },
  lifetime: { type: 'string', value: 'DURATION', help: 'SVID lifetime (default 1h)' },
};

export const POLICY_CHECK_OPTIONS: Record<string, OptionSpec> = {
  'policy-file': { type: 'string', value: 'FILE', help: 'the policy file to evaluate' },
  id: { type: 'string', value: 'SPIFFE_ID', help: "the caller's SPIFFE ID" },
  issuer: { type: 'string', value: 'NAME', help: "the token's issuer name (JWT callers)" },
  claims: { type: 'string', value: 'JSON', help: "the token's claims, a JSON object (JWT callers)" },
  'api-key': { type: 'string', value: 'NAME', help: 'the caller is the API key with this name' },
};

export const APIKEY_NEW_OPTIONS: Record<string, OptionSpec> = {
  name: { type: 'string', value: 'NAME', help: 'identity name the key authenticates as (used in policy rules)' },
  expires: { type: 'string', value: 'DURATION|DATE', help: 'expiry: a duration from now (90d) or an ISO date' },
  route: {
    type: 'string',
    multiple: true,
    value: 'METHOD:PATH',
    help: 'only these routes, e.g. POST:/invoke (repeatable; glob paths)',
  },
};

export type Command =
  | { command: 'run'; options: RawOptions }
  | { command: 'certs-init'; options: Record<string, string | undefined> }
  | { command: 'certs-issue'; options: Record<string, string | undefined> }
  | { command: 'inject-webhook'; options: Record<string, string | boolean | string[] | undefined> }
  | {
      command: 'policy-check';
      options: Record<string, string | undefined>;
      /** Both absent: only validate the file and print its warnings. */
      method: string | undefined;
      path: string | undefined;
    }
  | { command: 'apikey-new'; options: Record<string, string | string[] | undefined> }
  | { command: 'help' }
  | { command: 'version' };

export function envName(flag: string): string {
  return `SPIFFE_SIDECAR_${flag.toUpperCase().replaceAll('-', '_')}`;
}

function parseFlags(args: string[], specs: Record<string, OptionSpec>, usage: string) {
  return parseFlagsAndPositionals(args, specs, usage, false).values;
}

function parseFlagsAndPositionals(
  args: string[],
  specs: Record<string, OptionSpec>,
  usage: string,
  positionals: boolean,
) {
  try {
    return parseArgs({
      args,
      options: Object.fromEntries(
        Object.entries(specs).map(([name, s]) => [name, { type: s.type, multiple: s.multiple ?? false }]),
      ),
      allowPositionals: positionals,
      allowNegative: true,
      strict: true,
    }) as { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };
  } catch (err) {
    throw new SidecarError('ERR_CONFIG_INVALID', `${(err as Error).message}; see '${usage} --help'`, { cause: err });
  }
}

function envBoolean(name: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new SidecarError('ERR_CONFIG_INVALID', `${name}=${JSON.stringify(value)}: expected true or false`);
}

/** Fills options the command line left unset from SPIFFE_SIDECAR_* variables. */
function withEnv(values: Record<string, unknown>, env: NodeJS.ProcessEnv): RawOptions {
  const out: Record<string, unknown> = { ...values };
  for (const [flag, spec] of Object.entries(RUN_OPTIONS)) {
    const name = envName(flag);
    const value = env[name];
    if (out[flag] !== undefined || value === undefined || value === '') continue;
    if (spec.type === 'boolean') out[flag] = envBoolean(name, value);
    else if (spec.multiple)
      out[flag] = value
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
    else out[flag] = value;
  }
  // The Workload Endpoint spec's variable, read as-is: the default socket for SPIRE mode.
  if (env.SPIFFE_ENDPOINT_SOCKET) out.spiffeEndpointSocket = env.SPIFFE_ENDPOINT_SOCKET;
  return out as RawOptions;
}

/** Parses argv (without `node` and the script) into a command. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): Command {
  const [first, second] = argv;
  if (first === '--help' || first === '-h' || first === 'help') return { command: 'help' };
  if (first === '--version' || first === 'version') return { command: 'version' };
  if (first === 'certs') {
    if (second === 'init' || second === 'issue') {
      const rest = argv.slice(2);
      if (rest.includes('--help')) return { command: 'help' };
      const specs = second === 'init' ? CERTS_INIT_OPTIONS : CERTS_ISSUE_OPTIONS;
      const values = parseFlags(rest, specs, `spiffe-sidecar certs ${second}`);
      return { command: second === 'init' ? 'certs-init' : 'certs-issue', options: values as Record<string, string> };
    }
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `unknown command 'certs ${second ?? ''}'; use 'certs init' or 'certs issue'`,
    );
  }
  if (first === 'inject-webhook') {
    const rest = argv.slice(1);
    if (rest.includes('--help')) return { command: 'help' };
    return {
      command: 'inject-webhook',
      options: parseFlags(rest, INJECT_WEBHOOK_OPTIONS, 'spiffe-sidecar inject-webhook'),
    };
  }
  if (first === 'policy' && second === 'check') {
    const rest = argv.slice(2);
    if (rest.includes('--help')) return { command: 'help' };
    const usage = 'spiffe-sidecar policy check';
    const parsed = parseFlagsAndPositionals(rest, POLICY_CHECK_OPTIONS, usage, true);
    if (parsed.positionals.length !== 2 && parsed.positionals.length !== 0)
      throw new SidecarError(
        'ERR_CONFIG_INVALID',
        `${usage}: expected METHOD PATH after the flags, e.g. GET /health (or neither, to only check the file)`,
      );
    const [method, path] = parsed.positionals as [string?, string?];
    return { command: 'policy-check', options: parsed.values as Record<string, string>, method, path };
  }
  if (first === 'apikey' && second === 'new') {
    const rest = argv.slice(2);
    if (rest.includes('--help')) return { command: 'help' };
    return {
      command: 'apikey-new',
      options: parseFlags(rest, APIKEY_NEW_OPTIONS, 'spiffe-sidecar apikey new') as Record<string, string | string[]>,
    };
  }
  if (first === 'policy' || first === 'apikey')
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `unknown command '${first} ${second ?? ''}'; use 'policy check' or 'apikey new'`,
    );
  const args = first === 'run' ? argv.slice(1) : argv;
  if (args.includes('--help') || args.includes('-h')) return { command: 'help' };
  if (args[0] !== undefined && !args[0].startsWith('-')) {
    throw new SidecarError('ERR_CONFIG_INVALID', `unknown command '${args[0]}'; see 'spiffe-sidecar --help'`);
  }
  const options = withEnv(parseFlags(args, RUN_OPTIONS, 'spiffe-sidecar run'), env);
  if (!options.config) return { command: 'run', options };
  // Precedence: flags, then the environment, then the file, then the defaults.
  const file = readConfigFile(options.config, RUN_OPTIONS);
  const merged: Record<string, unknown> = { ...file };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) merged[key] = value;
  return { command: 'run', options: merged as RawOptions };
}

function describe(specs: Record<string, OptionSpec>): string {
  return Object.entries(specs)
    .map(([name, s]) => `  --${`${name}${s.value ? ` ${s.value}` : ''}`.padEnd(30)} ${s.help}`)
    .join('\n');
}

export function helpText(): string {
  return `spiffe-sidecar: a SPIFFE mTLS sidecar proxy

Usage:
  spiffe-sidecar [run] [flags]       terminate mTLS, verify and authorize peers, forward to the app
  spiffe-sidecar certs init [flags]  create a development CA for a trust domain
  spiffe-sidecar certs issue [flags] issue an X509-SVID from a development CA
  spiffe-sidecar policy check [flags] [METHOD PATH]
                                     print the decision of a policy file and the rule that made it, and
                                     warnings about deny rules another spelling of a path escapes
  spiffe-sidecar apikey new [flags]  make an API key: prints the key once and the line for --api-keys-file
  spiffe-sidecar inject-webhook [flags]
                                     Kubernetes admission webhook that injects the sidecar into pods

run flags (each also as ${envName('<flag>')}, e.g. ${envName('allow')}):
${describe(RUN_OPTIONS)}

certs init flags:
${describe(CERTS_INIT_OPTIONS)}

certs issue flags:
${describe(CERTS_ISSUE_OPTIONS)}

policy check flags:
${describe(POLICY_CHECK_OPTIONS)}

apikey new flags:
${describe(APIKEY_NEW_OPTIONS)}

inject-webhook flags:
${describe(INJECT_WEBHOOK_OPTIONS)}
`;
}
