// The authenticated caller, as every later stage (policy, headers, logs) sees it.
import type { SpiffeId } from '../spiffe/id.js';

export interface PeerIdentity {
  readonly id: SpiffeId;
  readonly method: 'mtls';
  /** SHA-256 (hex) of the peer leaf certificate's DER, for XFCC `Hash=`. */
  readonly leafSha256: string;
}

/** A rejected caller: `reason` is a bounded code (fit for a metric label), `message` is for the log. */
export interface Rejection {
  readonly reason: string;
  readonly message: string;
}
