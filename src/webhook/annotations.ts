// Pod annotations → what to inject. Annotation values are untrusted input (anyone who may create a pod
// writes them), so each is checked against a strict grammar and becomes exactly one flag value of the
// sidecar; nothing is ever spliced into a container field. A bad value throws a SidecarError whose
// message names the annotation: the webhook turns it into an admission denial.
import { parseDuration } from '../duration.js';
import { SidecarError } from '../errors.js';
import { quoteInput } from '../spiffe/id.js';
import { compileAllowRules } from '../spiffe/match.js';
import { IDENTITY_MODES, type IdentityMode, parsePort } from './options.js';

export const ANNOTATION_PREFIX = 'spiffe-sidecar.io/';

/** Every annotation the webhook reads (and `status`, which it writes). */
export const ANNOTATIONS = {
  inject: `${ANNOTATION_PREFIX}inject`,
  mode: `${ANNOTATION_PREFIX}mode`,
  authMode: `${ANNOTATION_PREFIX}auth-mode`,
  appPort: `${ANNOTATION_PREFIX}app-port`,
  port: `${ANNOTATION_PREFIX}port`,
  allow: `${ANNOTATION_PREFIX}allow`,
  policyConfigMap: `${ANNOTATION_PREFIX}policy-configmap`,
  outbound: `${ANNOTATION_PREFIX}outbound`,
  secret: `${ANNOTATION_PREFIX}secret`,
  jwtAudience: `${ANNOTATION_PREFIX}jwt-audience`,
  tokenReview: `${ANNOTATION_PREFIX}token-review`,
  tokenExpiration: `${ANNOTATION_PREFIX}token-expiration`,
  status: `${ANNOTATION_PREFIX}status`,
} as const;

/** The namespace label that opts every pod of the namespace in. */
export const NAMESPACE_LABEL = 'spiffe-sidecar.io/inject';

/**
 * An outbound route as the sidecar will run it. A route written `auth=k8s-token,audience=AUD` sends the
 * pod's own service-account token: `route` then says `auth=jwt` and `tokenAudience` is AUD, and the
 * sidecar's container gets that token projected and `token-file=` pointing at it (sidecar-container.ts).
 */
export interface OutboundAnnotationRoute {
  readonly route: string;
  readonly tokenAudience: string | undefined;
}

export interface PodSidecarSettings {
  readonly mode: IdentityMode;
  readonly authMode: 'mtls' | 'jwt';
  /** The app's port on loopback; undefined for an outbound-only sidecar. */
  readonly appPort: number | undefined;
  /** Where the sidecar serves callers. */
  readonly port: number;
  readonly allow: readonly string[];
  readonly policyConfigMap: string | undefined;
  readonly outbound: readonly OutboundAnnotationRoute[];
  /** Lifetime of the projected tokens of `auth=k8s-token` routes (kubelet renews them at 80 %). */
  readonly tokenExpirationSeconds: number;
  readonly secret: string | undefined;
  readonly jwtAudience: readonly string[];
  readonly tokenReview: boolean;
}

/** Longest annotation value we read; Kubernetes allows 256 KiB for all of them together. */
const MAX_VALUE_LENGTH = 8192;
const MAX_LIST_ITEMS = 32;
/** DNS-1123 subdomain: Secret and ConfigMap names. */
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** An audience: printable, no list separators. */
const AUDIENCE = /^[A-Za-z0-9._:/@-]{1,256}$/;
/** The characters an outbound route can contain (see --outbound); no spaces, quotes or control bytes. */
const ROUTE = /^[A-Za-z0-9.:[\]/=,_*-]+$/;
/**
 * Projected token lifetimes: Kubernetes refuses less than 10 minutes; past a day a token copied out of the
 * node stays good for longer than kubelet would ever keep one (it renews at 80 % of the lifetime or 24 h).
 */
const MIN_TOKEN_EXPIRATION_SECONDS = 600;
const MAX_TOKEN_EXPIRATION_SECONDS = 86_400;
export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600;

function bad(annotation: string, value: string, why: string): never {
  throw new SidecarError('ERR_CONFIG_INVALID', `annotation ${annotation}: ${quoteInput(value)}: ${why}`);
}

function stringValue(annotations: Record<string, unknown>, name: string): string | undefined {
  const value = annotations[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') bad(name, String(value), 'must be a string');
  if (value.length > MAX_VALUE_LENGTH) bad(name, value, `longer than ${MAX_VALUE_LENGTH} characters`);
  return value.trim();
}

/** Items separated by whitespace (newlines in a YAML block) and, unless `commas` is false, commas. */
function listValue(annotations: Record<string, unknown>, name: string, commas = true): string[] {
  const value = stringValue(annotations, name);
  if (value === undefined) return [];
  const items = value.split(commas ? /[\s,]+/ : /\s+/).filter(Boolean);
  if (items.length === 0) bad(name, value, 'is empty');
  if (items.length > MAX_LIST_ITEMS) bad(name, value, `more than ${MAX_LIST_ITEMS} items`);
  return items;
}

function choice<T extends string>(
  annotations: Record<string, unknown>,
  name: string,
  allowed: readonly T[],
): T | undefined {
  const value = stringValue(annotations, name);
  if (value !== undefined && !allowed.includes(value as T)) bad(name, value, `use one of ${allowed.join(', ')}`);
  return value as T | undefined;
}

function port(annotations: Record<string, unknown>, name: string): number | undefined {
  const value = stringValue(annotations, name);
  if (value === undefined) return undefined;
  return parsePort(value, `annotation ${name}`);
}

/**
 * One route of the outbound annotation. `auth=k8s-token,audience=AUD` becomes `auth=jwt,audience=AUD` with
 * the audience set apart for the projected token; every other route is left for the sidecar to judge.
 */
function outboundRoute(route: string, mode: IdentityMode): OutboundAnnotationRoute {
  const name = ANNOTATIONS.outbound;
  if (route.length > 2048 || !ROUTE.test(route))
    bad(name, route, 'not a route; write LISTEN=REMOTE_URL,id=RULE[,auth=jwt|k8s-token,audience=AUD]');
  // The pod's author must not point the sidecar at files: the only ones in its container are its own (the
  // SVID's key, the TokenReview token), and token-file= would send one as a bearer token to any remote.
  // client-secret-file= too: it would send the file's content as a password to a token endpoint of the
  // author's choosing.
  if (/,client-secret-file=/.test(route))
    bad(
      name,
      route,
      'client-secret-file is not available in an injected sidecar (it would read a file of the sidecar); use client-auth=private-key-jwt or client-auth=mtls in SPIRE mode',
    );
  if (/,token-file=/.test(route))
    bad(
      name,
      route,
      "token-file is not available in an injected sidecar; send the pod's service-account token with auth=k8s-token,audience=AUD, or a JWT-SVID with auth=jwt in SPIRE mode",
    );
  const [head, ...pairs] = route.split(',');
  // Every https:// and tls:// remote is mutual TLS with the pod's own SVID, which jwt mode does not have.
  if (mode === 'jwt' && /^[^=]*=(https|tls):/.test(head))
    bad(
      name,
      route,
      "jwt mode has no X.509 identity, and an https:// or tls:// remote is mutual TLS with the pod's SVID; use mode spire or file (auth=k8s-token then sends the token over that connection)",
    );
  const auth = pairs.filter((p) => p.startsWith('auth='));
  if (!auth.includes('auth=k8s-token')) return { route, tokenAudience: undefined };
  if (auth.length > 1) bad(name, route, 'option auth= is given twice');
  const audiences = pairs.filter((p) => p.startsWith('audience=')).map((p) => p.slice('audience='.length));
  if (audiences.length !== 1)
    bad(name, route, 'auth=k8s-token needs audience= once: the audience of the token, e.g. audience=orders');
  const audience = audiences[0];
  if (!AUDIENCE.test(audience))
    bad(name, route, `audience ${quoteInput(audience)}: 1 to 256 letters, digits and . _ : / -`);
  if (/^[^=]*=tls:/.test(head))
    bad(name, route, 'auth=k8s-token sends a bearer token over HTTP: a tls:// remote carries bytes, always mTLS');
  return {
    route: [head, ...pairs.map((p) => (p === 'auth=k8s-token' ? 'auth=jwt' : p))].join(','),
    tokenAudience: audience,
  };
}

/** The lifetime of the projected tokens, a duration in whole seconds (e.g. 10m, 1h). */
function tokenExpiration(annotations: Record<string, unknown>): number | undefined {
  const name = ANNOTATIONS.tokenExpiration;
  const value = stringValue(annotations, name);
  if (value === undefined) return undefined;
  const ms = parseDuration(value, `annotation ${name}`);
  if (ms % 1000 !== 0) bad(name, value, 'whole seconds: Kubernetes counts a token lifetime in seconds');
  if (ms < MIN_TOKEN_EXPIRATION_SECONDS * 1000)
    bad(name, value, 'at least 10m: Kubernetes refuses a projected token that lives less than 10 minutes');
  if (ms > MAX_TOKEN_EXPIRATION_SECONDS * 1000)
    bad(name, value, 'at most 24h: a shorter-lived token is a smaller loss if it leaks');
  return ms / 1000;
}

function objectName(annotations: Record<string, unknown>, name: string): string | undefined {
  const value = stringValue(annotations, name);
  if (value !== undefined && (value.length > 253 || !OBJECT_NAME.test(value)))
    bad(name, value, 'not a Kubernetes object name (lowercase letters, digits, - and .)');
  return value;
}

/**
 * Whether the pod asks for the sidecar: `inject: "true"`, or a namespace that opted in and no
 * `inject: "false"`. Any other value of `inject` is an error rather than a silent no.
 */
export function injectionRequested(annotations: Record<string, unknown>, namespaceOptIn: boolean): boolean {
  const value = choice(annotations, ANNOTATIONS.inject, ['true', 'false'] as const);
  return value === undefined ? namespaceOptIn : value === 'true';
}

/** Reads and cross-checks the annotations of a pod that asked for the sidecar. */
export function parsePodSettings(
  annotations: Record<string, unknown>,
  defaults: { mode: IdentityMode; port: number },
): PodSidecarSettings {
  const known = new Set<string>(Object.values(ANNOTATIONS));
  for (const name of Object.keys(annotations)) {
    if (name.startsWith(ANNOTATION_PREFIX) && !known.has(name))
      bad(name, String(annotations[name]), `unknown annotation; known: ${[...known].join(', ')}`);
  }
  const mode = choice(annotations, ANNOTATIONS.mode, IDENTITY_MODES) ?? defaults.mode;
  const authModeValue = choice(annotations, ANNOTATIONS.authMode, ['mtls', 'jwt'] as const);
  const appPort = port(annotations, ANNOTATIONS.appPort);
  const listenPort = port(annotations, ANNOTATIONS.port);
  const allow = listValue(annotations, ANNOTATIONS.allow);
  const policyConfigMap = objectName(annotations, ANNOTATIONS.policyConfigMap);
  const outbound = listValue(annotations, ANNOTATIONS.outbound, false).map((r) => outboundRoute(r, mode));
  const expiration = tokenExpiration(annotations);
  const secret = objectName(annotations, ANNOTATIONS.secret);
  const jwtAudience = listValue(annotations, ANNOTATIONS.jwtAudience);
  const tokenReview = choice(annotations, ANNOTATIONS.tokenReview, ['true', 'false'] as const) === 'true';

  for (const rule of allow) {
    try {
      compileAllowRules([rule]);
    } catch (err) {
      throw new SidecarError('ERR_CONFIG_INVALID', `annotation ${ANNOTATIONS.allow}: ${(err as Error).message}`);
    }
  }
  for (const audience of jwtAudience) {
    if (!AUDIENCE.test(audience)) bad(ANNOTATIONS.jwtAudience, audience, 'letters, digits and . _ : / @ - only');
  }
  if (expiration !== undefined && outbound.every((r) => r.tokenAudience === undefined))
    bad(
      ANNOTATIONS.tokenExpiration,
      stringValue(annotations, ANNOTATIONS.tokenExpiration) ?? '',
      `needs a route with auth=k8s-token in ${ANNOTATIONS.outbound}: it is the lifetime of that token`,
    );

  if (mode === 'file' && secret === undefined) {
    throw new SidecarError(
      'ERR_CONFIG_MISSING',
      `annotation ${ANNOTATIONS.secret} is required in file mode: the Secret with tls.crt, tls.key and ca.crt (see spiffe-sidecar certs issue)`,
    );
  }
  if (mode !== 'file' && secret !== undefined)
    bad(ANNOTATIONS.secret, secret, `only file mode reads a Secret (this pod is in ${mode} mode)`);
  if (mode === 'file' && authModeValue === 'jwt')
    bad(
      ANNOTATIONS.authMode,
      'jwt',
      'file mode serves mutual TLS; use mode jwt (service-account tokens) or spire (JWT-SVIDs)',
    );
  if (mode === 'jwt' && authModeValue === 'mtls')
    bad(ANNOTATIONS.authMode, 'mtls', 'jwt mode has no X.509 identity; use mode spire or file for mutual TLS');
  if (mode !== 'jwt' && tokenReview) bad(ANNOTATIONS.tokenReview, 'true', 'TokenReview is for jwt mode');
  const authMode = mode === 'jwt' ? 'jwt' : (authModeValue ?? 'mtls');

  if (appPort === undefined) {
    // An outbound-only sidecar: nothing listens for callers, so nothing may be configured for them.
    if (outbound.length === 0) {
      throw new SidecarError(
        'ERR_CONFIG_MISSING',
        `annotation ${ANNOTATIONS.appPort} is required: the port the app listens on (bind it to 127.0.0.1), e.g. "8080"; or give ${ANNOTATIONS.outbound} for an outbound-only sidecar`,
      );
    }
    const inboundOnly = [
      [ANNOTATIONS.port, listenPort],
      [ANNOTATIONS.allow, allow.length > 0 ? allow : undefined],
      [ANNOTATIONS.policyConfigMap, policyConfigMap],
      [ANNOTATIONS.authMode, authModeValue],
      [ANNOTATIONS.jwtAudience, jwtAudience.length > 0 ? jwtAudience : undefined],
      [ANNOTATIONS.tokenReview, tokenReview || undefined],
    ] as const;
    for (const [name, value] of inboundOnly) {
      if (value !== undefined)
        bad(name, String(value), `needs ${ANNOTATIONS.appPort}: it configures callers of the app`);
    }
  } else {
    if (allow.length === 0 && policyConfigMap === undefined) {
      throw new SidecarError(
        'ERR_CONFIG_MISSING',
        `annotation ${ANNOTATIONS.allow} or ${ANNOTATIONS.policyConfigMap} is required: who may call the app (default deny), e.g. spiffe://example.org/ns/shop/sa/frontend`,
      );
    }
    if (allow.length > 0 && policyConfigMap !== undefined)
      bad(ANNOTATIONS.policyConfigMap, policyConfigMap, `a policy replaces ${ANNOTATIONS.allow}: give one of them`);
    if (authMode === 'jwt' && jwtAudience.length === 0) {
      throw new SidecarError(
        'ERR_CONFIG_MISSING',
        `annotation ${ANNOTATIONS.jwtAudience} is required for JWT callers: the audience their tokens must name, e.g. orders`,
      );
    }
    if (authMode === 'mtls' && jwtAudience.length > 0)
      bad(ANNOTATIONS.jwtAudience, jwtAudience.join(','), `needs ${ANNOTATIONS.authMode}: jwt`);
  }
  return Object.freeze({
    mode,
    authMode,
    appPort,
    port: listenPort ?? defaults.port,
    allow: Object.freeze(allow),
    policyConfigMap,
    outbound: Object.freeze(outbound.map((r) => Object.freeze(r))),
    tokenExpirationSeconds: expiration ?? DEFAULT_TOKEN_EXPIRATION_SECONDS,
    secret,
    jwtAudience: Object.freeze(jwtAudience),
    tokenReview,
  });
}
