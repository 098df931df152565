// Our own JWT-SVID for one audience, from the Workload API, checked before anything sends it: it must name
// us and that audience and not have expired. Throws an Error that says what was wrong.
import { decodeJwt } from 'jose';
import type { IdentitySource } from '../identity/source.js';
import type { WorkloadApiClient } from '../identity/workload-api-client.js';

export async function fetchOwnJwtSvid(
  client: WorkloadApiClient,
  audience: string,
  identity: IdentitySource | undefined,
  now = Date.now(),
): Promise<{ token: string; expiresAt: number }> {
  // Several SVIDs may be registered for this workload: ours is the one our X509-SVID names.
  const self = identity?.status().ready ? identity.current().svid.id.toString() : undefined;
  const svid = (await client.fetchJwtSvid([audience], self)).find((s) => !self || s.spiffe_id === self);
  if (!svid) throw new Error(`the Workload API returned no JWT-SVID${self ? ` for ${self}` : ''}`);
  const claims = decodeJwt(svid.svid);
  const aud = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
  if (claims.sub !== svid.spiffe_id || !aud.includes(audience))
    throw new Error('the JWT-SVID names another subject or audience');
  const expiresAt = (claims.exp ?? 0) * 1000;
  if (expiresAt <= now) throw new Error('the JWT-SVID has already expired');
  return { token: svid.svid, expiresAt };
}
