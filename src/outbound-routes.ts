// Outbound routes, composed from their config: the remote's rule, and where a JWT route's token comes
// from. Loaded only when --outbound is given.
import { readFile } from 'node:fs/promises';
import { decodeJwt } from 'jose';
import type { Config, OutboundRouteConfig } from './config.js';
import { WorkloadApiClient } from './identity/workload-api-client.js';
import type { IdentitySource } from './identity/source.js';
import type { Logger } from './log.js';
import type { OutboundRoute } from './proxy/outbound.js';
import type { TcpOutboundRoute } from './proxy/tcp-outbound.js';

/** An outbound route from its config: the remote's rule, and where a JWT route's token comes from. */
export function outboundRoute(
  route: OutboundRouteConfig,
  config: Config,
  identity: IdentitySource | undefined,
  log: Logger,
  closers: (() => void)[],
): OutboundRoute {
  let token: (() => Promise<string | undefined>) | undefined;
  const source = config.source;
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
    const client = new WorkloadApiClient(source.endpoint);
    closers.push(() => client.close());
    const audience = route.audience as string;
    let cached: { token: string; refreshAt: number; expiresAt: number } | undefined;
    let inFlight: Promise<string | undefined> | undefined;
    const fetchToken = async (): Promise<string | undefined> => {
      const now = Date.now();
      const self = identity?.status().ready ? identity.current().svid.id.toString() : undefined;
      try {
        const svid = (await client.fetchJwtSvid([audience], self)).find((s) => !self || s.spiffe_id === self);
        if (!svid) throw new Error(`the Workload API returned no JWT-SVID${self ? ` for ${self}` : ''}`);
        const claims = decodeJwt(svid.svid);
        const aud = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
        if (claims.sub !== svid.spiffe_id || !aud.includes(audience))
          throw new Error('the JWT-SVID names another subject or audience');
        const exp = (claims.exp ?? 0) * 1000;
        if (exp <= now) throw new Error('the JWT-SVID has already expired');
        cached = { token: svid.svid, refreshAt: now + (exp - now) / 2, expiresAt: exp };
        return svid.svid;
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
  }
  if (route.auth !== 'mtls' && route.auth !== 'jwt') throw new Error(`auth=${route.auth} is not wired yet`);
  return {
    host: route.host,
    port: route.port,
    remote: route.remote,
    expect: route.idRule,
    expectText: route.id,
    auth: route.auth,
    token,
    limits: config.limits,
  };
}

/** An L4 route (`tls://` remote): who the remote must be, and the limits. */
export function tcpOutboundRoute(route: OutboundRouteConfig, config: Config): TcpOutboundRoute {
  const id = route.id as string;
  if (route.auth !== 'mtls' && route.auth !== 'jwt') throw new Error(`auth=${route.auth} is not wired yet`);
  return {
    host: route.host,
    port: route.port,
    remote: route.remote,
    expect: route.idRule as NonNullable<OutboundRouteConfig['idRule']>,
    expectText: id,
    limits: config.limits,
  };
}
