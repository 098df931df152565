// What every identity source provides: our current X509-SVID with its key, and the X.509 bundles of
// every trust domain we trust, each kept apart. A plain loaded value satisfies `current()`, so tests
// pass literals, not mocks.
import type { X509BundleSet } from '../spiffe/bundle.js';
import type { Certificate } from '../spiffe/certificate.js';
import type { Logger } from '../log.js';
import type { SpiffeId } from '../spiffe/id.js';

export interface X509Svid {
  readonly id: SpiffeId;
  /** Leaf then intermediates, parsed. */
  readonly chain: readonly Certificate[];
  /** PEM of the chain and of the private key, ready for tls.createSecureContext. */
  readonly chainPem: string;
  readonly keyPem: string;
}

export interface X509Identity {
  readonly svid: X509Svid;
  /** Bundles keyed by trust domain: our own and the federated ones. Never merged for verification. */
  readonly bundles: X509BundleSet;
}

export interface IdentityStatus {
  ready: boolean;
  reason?: 'waiting_for_svid' | 'svid_expired' | 'identity_revoked' | 'workload_api_failed';
}

export interface IdentitySource {
  /** Where the identity comes from (metrics tell them apart without loading the other's code). */
  readonly kind: 'file' | 'workload_api';
  /** The current identity (throws ERR_NO_IDENTITY before the first one in SPIRE mode). */
  current(): X509Identity;
  /** Ready to serve: an identity is loaded, unexpired and not revoked. */
  status(): IdentityStatus;
  /** Called with each new identity after it passed validation; returns an unsubscribe function. */
  onUpdate(listener: (identity: X509Identity) => void): () => void;
  /** SPIRE mode: called when the Workload API withdraws our identity. */
  onRevoked?(listener: () => void): () => void;
  /** What the metrics report of it, whatever the kind. */
  stats(): IdentitySourceStats;
  close(): Promise<void>;
}

/** Counts since start: identity updates by outcome; and for the Workload API, its stream. */
export interface IdentitySourceStats {
  readonly updated: number;
  readonly unchanged: number;
  readonly failed: number;
  /** SPIRE mode: a stream is open and has delivered. */
  readonly connected?: boolean;
  /** SPIRE mode: streams re-opened after they ended. */
  readonly reconnects?: number;
}

/** Tells every listener of a new identity; one that throws is logged and does not stop the others. */
export function notifyAll(
  listeners: Iterable<(identity: X509Identity) => void>,
  identity: X509Identity,
  log: Logger,
): void {
  for (const listener of listeners) {
    try {
      listener(identity);
    } catch (err) {
      log.error({ event: 'identity_listener_failed', err }, 'applying the new identity failed');
    }
  }
}

/** Every authority of every bundle, as PEM: what OpenSSL may use to pre-check peer chains. */
export function allAuthoritiesPem(bundles: X509BundleSet): string[] {
  const pems: string[] = [];
  for (const bundle of bundles.values()) {
    for (const cert of bundle.authorities) pems.push(cert.node.toString());
  }
  return pems;
}
