// Outbound routes, composed from their config: the remote's rule, and where a route's bearer token comes
// from (a JWT-SVID or token file, an OAuth token endpoint, or the caller's own token once this sidecar has
// verified it). Loaded only when --outbound is given; a route that could never send its token refuses to start.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Config, OutboundRouteConfig } from './config.js';
import { SidecarError } from './errors.js';
import { WorkloadApiClient } from './identity/workload-api-client.js';
import type { IdentitySource } from './identity/source.js';
import type { Logger } from './log.js';
import { fetchOwnJwtSvid } from './outbound/own-jwt-svid.js';
import { clientCredentialsToken, exchangedToken, type OAuthRoute } from './outbound/route-tokens.js';
import type { ClientAuthentication, TokenEndpoint } from './outbound/token-endpoint.js';
import type { OutboundRoute } from './proxy/outbound.js';
import type { TcpOutboundRoute } from './proxy/tcp-outbound.js';

/** What the composition gives a route beyond its config. */
export interface OutboundRouteOptions {
  /**
   * auth=forward: whether this sidecar verified the `Authorization` field (app.ts: the inbound
   * JwtAuthenticator's `authenticate(authorization).ok`); without it a forward route refuses to start.
   */
  verifyToken?: (authorization: string) => Promise<boolean>;
}

/** The token endpoint's deadline: the app is not kept waiting longer than for the remote itself. */
const TOKEN_ENDPOINT_TIMEOUT_MS = 5_000;

function describeRoute(route: OutboundRouteConfig): string {
  return `--outbound ${route.host}:${route.port}=${route.remote.origin}`;
}

/** An outbound route from its config: the remote's rule, and where its bearer token comes from. */
export function outboundRoute(
  route: OutboundRouteConfig,
  config: Config,
  identity: IdentitySource | undefined,
  log: Logger,
  closers: (() => void)[],
  options: OutboundRouteOptions = {},
): OutboundRoute {
  let token: (() => Promise<string | undefined>) | undefined;
  let accessToken: OutboundRoute['accessToken'];
  const source = config.source;
  let client: WorkloadApiClient | undefined;
  const workloadApi = (): WorkloadApiClient => {
    if (source?.kind !== 'workload-api')
      throw new SidecarError('ERR_CONFIG_INVALID', `${describeRoute(route)}: a JWT-SVID needs --workload-api-socket`);
    if (!client) {
      const opened = new WorkloadApiClient(source.endpoint);
      closers.push(() => opened.close());
      client = opened;
    }
    return client;
  };
  if (route.auth === 'jwt' && route.tokenFile) {
    // A projected token file is rotated by the kubelet: re-read it, at most once a second.
    const file = route.tokenFile;
    let cached: { text: string | undefined; at: number } | undefined;
    token = async () => {
      if (!cached || Date.now() - cached.at > 1000) {
        const text = await readFile(file, 'utf8').then(
          (t) => t.trim() || undefined,
          () => undefined,
        );
        cached = { text, at: Date.now() };
      }
      return cached.text;
    };
  } else if (route.auth === 'jwt' && source?.kind === 'workload-api') {
    // A JWT-SVID for our own SPIFFE ID and this audience, kept until half of its lifetime has passed.
    const api = workloadApi();
    const audience = route.audience as string;
    let cached: { token: string; refreshAt: number; expiresAt: number } | undefined;
    let inFlight: Promise<string | undefined> | undefined;
    const fetchToken = async (): Promise<string | undefined> => {
      const now = Date.now();
      try {
        const svid = await fetchOwnJwtSvid(api, audience, identity, now);
        cached = { token: svid.token, refreshAt: now + (svid.expiresAt - now) / 2, expiresAt: svid.expiresAt };
        return svid.token;
      } catch (err) {
        log.warn({ event: 'jwt_svid_fetch_failed', audience }, (err as Error).message);
        return cached && now < cached.expiresAt ? cached.token : undefined;
      }
    };
    token = () => {
      if (cached && Date.now() < cached.refreshAt) return Promise.resolve(cached.token);
      // One fetch at a time: concurrent requests at refresh time share it.
      inFlight ??= fetchToken().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    };
  } else if (route.auth === 'client-credentials' || route.auth === 'token-exchange') {
    const oauth = oauthRoute(route, config, identity, log, workloadApi);
    if (route.auth === 'client-credentials') {
      const get = clientCredentialsToken(oauth);
      accessToken = () => get();
    } else {
      const get = exchangedToken(oauth);
      accessToken = (subject) =>
        subject === undefined ? Promise.resolve({ refused: 'token_unavailable' }) : get(subject);
    }
  } else if (route.auth === 'forward' && !options.verifyToken) {
    // Passing on a token nobody here checked would make this sidecar a laundry for forged ones.
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `${describeRoute(route)}: auth=forward passes on only a caller's token this sidecar verified, and it verifies none; configure inbound token verification (--auth-mode jwt, or --jwt-audience with --jwt-issuer or --jwt-bundle-file), or use auth=token-exchange`,
    );
  }
  return {
    host: route.host,
    port: route.port,
    remote: route.remote,
    expect: route.idRule,
    expectText: route.id,
    auth: route.auth,
    token,
    accessToken,
    verifyToken: route.auth === 'forward' ? options.verifyToken : undefined,
    limits: config.limits,
  };
}

/** A client-credentials or token-exchange route's token endpoint and how we authenticate to it. */
function oauthRoute(
  route: OutboundRouteConfig,
  config: Config,
  identity: IdentitySource | undefined,
  log: Logger,
  workloadApi: () => WorkloadApiClient,
): OAuthRoute {
  const oauth = route.oauth as NonNullable<OutboundRouteConfig['oauth']>;
  const { clientId } = oauth;
  let client: ClientAuthentication;
  if (oauth.clientAuth === 'secret') {
    client = { method: 'secret', clientId, secretFile: oauth.clientSecretFile as string };
  } else if (oauth.clientAuth === 'private-key-jwt') {
    const api = workloadApi();
    // RFC 7523 §3: the assertion's audience is the token endpoint; a fresh one per request, as servers that
    // remember assertions refuse one seen before.
    client = {
      method: 'private-key-jwt',
      clientId,
      assertion: async (audience) => (await fetchOwnJwtSvid(api, audience, identity)).token,
    };
  } else {
    client = {
      method: 'mtls',
      clientId,
      certificate: () => {
        if (!identity?.status().ready) return undefined;
        const { svid } = identity.current();
        return { cert: svid.chainPem, key: svid.keyPem };
      },
    };
  }
  const endpoint: TokenEndpoint = {
    url: oauth.tokenEndpoint,
    client,
    ca: extraCa(config),
    timeoutMs: Math.min(TOKEN_ENDPOINT_TIMEOUT_MS, config.limits.upstreamTimeoutMs),
  };
  return {
    endpoint,
    audience: route.audience,
    resource: oauth.resource,
    scope: oauth.scope,
    remote: route.remote.origin,
    log,
  };
}

/**
 * The CA an https token endpoint may chain to besides the system roots: --jwt-ca-file, the issuers' CA (the
 * token endpoint is usually the issuer's). Read once, at startup, where a missing file is a clear error.
 */
function extraCa(config: Config): string[] | undefined {
  const file = config.auth.tokens?.caFile;
  if (file === undefined) return undefined;
  try {
    return [readFileSync(file, 'utf8')];
  } catch (err) {
    throw new SidecarError(
      'ERR_FILE_READ',
      `--jwt-ca-file ${file}: cannot read the file (${(err as NodeJS.ErrnoException).code})`,
    );
  }
}

/** An L4 route (`tls://` remote): who the remote must be, and the limits. */
export function tcpOutboundRoute(route: OutboundRouteConfig, config: Config): TcpOutboundRoute {
  const id = route.id as string;
  return {
    host: route.host,
    port: route.port,
    remote: route.remote,
    expect: route.idRule as NonNullable<OutboundRouteConfig['idRule']>,
    expectText: id,
    limits: config.limits,
  };
}
