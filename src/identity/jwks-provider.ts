// Where an issuer's keys come from, as the JWT authenticator reads them: a remote JWKS (identity/remote-jwks)
// or a file (identity/jwt-bundles). `version` changes whenever the keys do, so verified-token caches can tell.
import type { JWKS } from '../spiffe/jwtsvid.js';

export interface JwksProvider {
  current(): JWKS | undefined;
  readonly version: number;
  /**
   * A token named a key we do not have: maybe the issuer rotated. Refreshes the keys at most once per cool-down
   * (made-up kids must not become a fetch storm) and settles when that refresh has: at once when none is due.
   */
  keyMissed(): Promise<void>;
  /** Refreshes that kept the last keys, by bounded reason (remote JWKS only). */
  readonly failureCounts?: Readonly<Record<string, number>>;
}
