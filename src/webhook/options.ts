// Flags of `spiffe-sidecar inject-webhook` and their validation into one frozen WebhookConfig. Every
// error names the flag and says how to fix it (ERR_CONFIG_MISSING / ERR_CONFIG_INVALID).
import { parseHostPort } from '../config.js';
import { INJECT_WEBHOOK_DEFAULTS as DEFAULTS } from '../config/defaults.js';
import type { OptionSpec } from '../config/option-spec.js';
import { parseDuration } from '../duration.js';
import { SidecarError } from '../errors.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from '../log.js';
import { parseTrustDomain } from '../spiffe/id.js';

/** The flag table; each flag's default is in INJECT_WEBHOOK_DEFAULTS (config/defaults.ts). */
export const INJECT_WEBHOOK_OPTIONS: Record<keyof typeof DEFAULTS, OptionSpec> = {
  listen: { type: 'string', value: 'HOST:PORT', help: 'where to serve HTTPS admission reviews' },
  'tls-cert-file': {
    type: 'string',
    value: 'FILE',
    help: "the webhook's serving certificate, PEM (tls.crt; hot-reloaded)",
  },
  'tls-key-file': { type: 'string', value: 'FILE', help: 'its private key, PEM (tls.key; hot-reloaded)' },
  image: {
    type: 'string',
    value: 'IMAGE',
    help: 'the sidecar image to inject, e.g. ghcr.io/acme/spiffe-sidecar:0.1.0',
  },
  'image-pull-policy': { type: 'string', value: 'POLICY', help: 'IfNotPresent, Always or Never' },
  'default-mode': {
    type: 'string',
    value: 'MODE',
    help: 'identity of pods without the mode annotation: spire, file or jwt',
  },
  'sidecar-port': { type: 'string', value: 'N', help: 'port the injected sidecar serves callers on' },
  'admin-port': { type: 'string', value: 'N', help: "port of the sidecar's /healthz and /readyz" },
  'k8s-issuer': {
    type: 'string',
    value: 'URL',
    help: 'JWT mode: the cluster service-account issuer',
  },
  'k8s-trust-domain': {
    type: 'string',
    value: 'TD',
    help: 'JWT mode: trust domain of service-account IDs',
  },
  'k8s-token-audience': {
    type: 'string',
    value: 'AUD',
    help: "JWT mode: audience of the sidecar's projected token, for TokenReview",
  },
  'cpu-request': { type: 'string', value: 'QUANTITY', help: 'CPU request of the sidecar' },
  'memory-request': { type: 'string', value: 'QUANTITY', help: 'memory request of the sidecar' },
  'memory-limit': { type: 'string', value: 'QUANTITY', help: 'memory limit of the sidecar' },
  'request-timeout': {
    type: 'string',
    value: 'DURATION',
    help: 'limit for a TLS handshake and for a whole admission request',
  },
  'log-level': { type: 'string', value: 'LEVEL', help: 'trace, debug, info, warn, error, fatal or silent' },
  'log-format': { type: 'string', value: 'FORMAT', help: 'json or pretty' },
};

export type IdentityMode = 'spire' | 'file' | 'jwt';
export const IDENTITY_MODES: readonly IdentityMode[] = ['spire', 'file', 'jwt'];

/** What every injected sidecar shares; pod annotations choose the rest. */
export interface SidecarTemplate {
  readonly image: string;
  readonly imagePullPolicy: 'IfNotPresent' | 'Always' | 'Never';
  readonly defaultMode: IdentityMode;
  readonly port: number;
  readonly adminPort: number;
  readonly k8sIssuer: string;
  readonly k8sTrustDomain: string;
  readonly k8sTokenAudience: string;
  readonly resources: { readonly cpuRequest: string; readonly memoryRequest: string; readonly memoryLimit: string };
}

export interface WebhookConfig {
  readonly listen: { readonly host: string; readonly port: number };
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
  readonly requestTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly sidecar: SidecarTemplate;
}

type RawWebhookOptions = Record<string, string | boolean | string[] | undefined>;

function invalid(message: string): never {
  throw new SidecarError('ERR_CONFIG_INVALID', message);
}

function required(raw: RawWebhookOptions, flag: string, example: string): string {
  const value = raw[flag];
  if (typeof value !== 'string' || value === '') {
    throw new SidecarError('ERR_CONFIG_MISSING', `--${flag} is required: ${example}`);
  }
  return value;
}

function optional(raw: RawWebhookOptions, flag: string): string | undefined {
  const value = raw[flag];
  return typeof value === 'string' ? value : undefined;
}

export function parsePort(text: string, what: string): number {
  if (!/^[1-9]\d{0,4}$/.test(text) || Number(text) > 65535)
    invalid(`${what} ${JSON.stringify(text)}: a port from 1 to 65535`);
  return Number(text);
}

/** An image reference: [registry[:port]/]path[:tag][@sha256:digest], nothing a shell or YAML would read twice. */
const IMAGE =
  /^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:\d{1,5})?(\/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$/;

/** A Kubernetes resource quantity such as 50m, 0.5, 64Mi or 1G. */
const QUANTITY = /^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/;

function quantity(raw: RawWebhookOptions, flag: 'cpu-request' | 'memory-request' | 'memory-limit'): string {
  const value = optional(raw, flag) ?? DEFAULTS[flag].value;
  if (!QUANTITY.test(value))
    invalid(`--${flag} ${JSON.stringify(value)}: a Kubernetes quantity such as 50m, 64Mi or 1Gi`);
  return value;
}

function oneOf<T extends string>(raw: RawWebhookOptions, flag: string, allowed: readonly T[], fallback: T): T {
  const value = optional(raw, flag) ?? fallback;
  if (!allowed.includes(value as T)) invalid(`--${flag} ${JSON.stringify(value)}: use one of ${allowed.join(', ')}`);
  return value as T;
}

/** The API server waits at most 30 s for a webhook; beyond a minute a stuck client only holds a socket. */
function parseRequestTimeout(text: string): number {
  const ms = parseDuration(text, '--request-timeout');
  if (ms < 1000 || ms > 60_000) invalid(`--request-timeout ${text}: must be between 1s and 60s`);
  return ms;
}

/** Validates the parsed flags; throws SidecarError on the first problem. */
export function parseWebhookOptions(raw: RawWebhookOptions): WebhookConfig {
  const tlsCertFile = required(raw, 'tls-cert-file', 'the PEM certificate the API server sees, e.g. /tls/tls.crt');
  const tlsKeyFile = required(raw, 'tls-key-file', 'its PEM private key, e.g. /tls/tls.key');
  const image = required(raw, 'image', 'the sidecar image to inject, e.g. ghcr.io/acme/spiffe-sidecar:0.1.0');
  if (image.length > 512 || !IMAGE.test(image))
    invalid(`--image ${JSON.stringify(image)}: not an image reference; write e.g. ghcr.io/acme/spiffe-sidecar:0.1.0`);
  const port = parsePort(optional(raw, 'sidecar-port') ?? DEFAULTS['sidecar-port'].value, '--sidecar-port');
  const adminPort = parsePort(optional(raw, 'admin-port') ?? DEFAULTS['admin-port'].value, '--admin-port');
  if (port === adminPort) invalid(`--sidecar-port and --admin-port are both ${port}: give them different ports`);
  const k8sIssuer = optional(raw, 'k8s-issuer') ?? DEFAULTS['k8s-issuer'].value;
  if (!/^https:\/\/[^\s,]+$/.test(k8sIssuer))
    invalid(`--k8s-issuer ${JSON.stringify(k8sIssuer)}: an https:// URL, exactly the iss of the cluster's tokens`);
  // No value in the defaults table: the default is whatever --k8s-issuer is.
  const k8sTokenAudience = optional(raw, 'k8s-token-audience') ?? k8sIssuer;
  if (!/^[\x21-\x7e]{1,256}$/.test(k8sTokenAudience) || k8sTokenAudience.includes(','))
    invalid(`--k8s-token-audience ${JSON.stringify(k8sTokenAudience)}: printable characters, no commas or spaces`);
  let k8sTrustDomain: string;
  try {
    k8sTrustDomain = parseTrustDomain(optional(raw, 'k8s-trust-domain') ?? DEFAULTS['k8s-trust-domain'].value);
  } catch (err) {
    return invalid(`--k8s-trust-domain: ${(err as Error).message}`);
  }
  return Object.freeze({
    listen: Object.freeze(parseHostPort(optional(raw, 'listen') ?? DEFAULTS.listen.value, '--listen')),
    tlsCertFile,
    tlsKeyFile,
    requestTimeoutMs: parseRequestTimeout(optional(raw, 'request-timeout') ?? DEFAULTS['request-timeout'].value),
    logLevel: oneOf(raw, 'log-level', LOG_LEVELS, DEFAULTS['log-level'].value),
    logFormat: oneOf(raw, 'log-format', LOG_FORMATS, DEFAULTS['log-format'].value),
    sidecar: Object.freeze({
      image,
      imagePullPolicy: oneOf(
        raw,
        'image-pull-policy',
        ['IfNotPresent', 'Always', 'Never'] as const,
        DEFAULTS['image-pull-policy'].value,
      ),
      defaultMode: oneOf(raw, 'default-mode', IDENTITY_MODES, DEFAULTS['default-mode'].value),
      port,
      adminPort,
      k8sIssuer,
      k8sTrustDomain,
      k8sTokenAudience,
      resources: Object.freeze({
        cpuRequest: quantity(raw, 'cpu-request'),
        memoryRequest: quantity(raw, 'memory-request'),
        memoryLimit: quantity(raw, 'memory-limit'),
      }),
    }),
  });
}
