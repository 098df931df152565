// The bearer token an OAuth route sends: its own, by client credentials (RFC 6749 §4.4), or the caller's
// exchanged for one meant for the remote (RFC 8693). A token endpoint that fails is a `token_unavailable`
// refusal and a `token_endpoint_failed` line; an exchange it turns down, `token_exchange_refused`.
import { createHash } from 'node:crypto';
import type { Logger } from '../log.js';
import { AccessTokenCache } from './access-tokens.js';
import { ACCESS_TOKEN_TYPE, jwtExpiry, requestToken, type TokenEndpoint, type TokenOutcome } from './token-endpoint.js';

export type RouteToken = { token: string } | { refused: 'token_unavailable' | 'token_exchange_refused' };

export interface OAuthRoute {
  readonly endpoint: TokenEndpoint;
  /** Keycloak's and Auth0's name for the token's target; RFC 8693 §2.1's too. */
  readonly audience: string | undefined;
  /** RFC 8707 resource indicator. */
  readonly resource: string | undefined;
  readonly scope: string | undefined;
  /** The route's remote, naming it in log lines. */
  readonly remote: string;
  readonly log: Logger;
  readonly now?: () => number;
}

/** Subject tokens remembered per route: each one is a caller, so a bound is a bound on memory. */
const MAX_EXCHANGED = 10_000;

/** Fetches with `grant`, logging a failure once per request to the endpoint (not per waiting caller). */
function fetcher(route: OAuthRoute, grant: 'client_credentials' | 'token_exchange') {
  const { endpoint, log } = route;
  return async (form: Readonly<Record<string, string | undefined>>): Promise<TokenOutcome> => {
    const outcome = await requestToken(endpoint, form, route.now);
    if (!outcome.ok)
      log.warn(
        {
          event: 'token_endpoint_failed',
          remote: route.remote,
          token_endpoint: `${endpoint.url.origin}${endpoint.url.pathname}`,
          grant,
          status: outcome.status,
          error: outcome.error,
          refused: outcome.refused,
        },
        outcome.message,
      );
    return outcome;
  };
}

/** Client credentials: one token for the route, our own, whoever the caller is. */
export function clientCredentialsToken(route: OAuthRoute): () => Promise<RouteToken> {
  const cache = new AccessTokenCache(1, route.now);
  const fetch = fetcher(route, 'client_credentials');
  const form = {
    grant_type: 'client_credentials',
    scope: route.scope,
    audience: route.audience,
    resource: route.resource,
  };
  const request = () => fetch(form);
  return async () => {
    const outcome = await cache.get('', request);
    return outcome.ok ? { token: outcome.accessToken } : { refused: 'token_unavailable' };
  };
}

/**
 * Token exchange: the caller's token (the subject) traded for one for the remote, remembered per subject
 * until shortly before either expires.
 */
export function exchangedToken(route: OAuthRoute): (subject: string) => Promise<RouteToken> {
  const cache = new AccessTokenCache(MAX_EXCHANGED, route.now);
  const fetch = fetcher(route, 'token_exchange');
  return async (subject) => {
    const key = createHash('sha256').update(subject).digest('base64url');
    const outcome = await cache.get(
      key,
      () =>
        fetch({
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
          subject_token: subject,
          // RFC 8693 §3: access_token says what the token is for (an access token of the authorization server
          // we ask, usable like any other), jwt only what it looks like; the caller sent it as its access
          // token, whatever its format. Keycloak's exchange takes access_token only.
          subject_token_type: ACCESS_TOKEN_TYPE,
          requested_token_type: ACCESS_TOKEN_TYPE,
          audience: route.audience,
          resource: route.resource,
          scope: route.scope,
        }),
      () => jwtExpiry(subject),
    );
    if (outcome.ok) return { token: outcome.accessToken };
    return { refused: outcome.refused ? 'token_exchange_refused' : 'token_unavailable' };
  };
}
