// The authenticated caller, as every later stage (policy, headers, logs) sees it.
import type { SpiffeId } from '../spiffe/id.js';

export type PeerIdentity =
  /** An X509-SVID verified in the TLS handshake. */
  | {
      readonly method: 'mtls';
      readonly id: SpiffeId;
      /** SHA-256 hex of the leaf DER, for XFCC. */ readonly leafSha256: string;
    }
  /** A JWT-SVID, or a token of an issuer that maps its subjects to SPIFFE IDs (Kubernetes). */
  | { readonly method: 'jwt'; readonly id: SpiffeId; readonly issuer?: string; readonly subject: string }
  /** A token of another OIDC issuer: no SPIFFE ID, only who issued it and for whom. */
  | { readonly method: 'oidc'; readonly id?: undefined; readonly issuer: string; readonly subject: string };

/** A rejected caller: `reason` is a bounded code (fit for a metric label), `message` is for the log. */
export interface Rejection {
  readonly reason: string;
  readonly message: string;
}

/** How the caller appears in the audit log: its SPIFFE ID, or issuer and subject. */
export function describePeer(peer: PeerIdentity): string {
  return peer.id ? peer.id.toString() : `${peer.issuer}#${peer.subject}`;
}
