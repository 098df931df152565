// What every identity source provides: our current X509-SVID with its key, and the X.509 bundles of
// every trust domain we trust, each kept apart. A plain loaded value satisfies `current()`, so tests
// pass literals, not mocks.
import type { X509BundleSet } from '../spiffe/bundle.js';
import type { Certificate } from '../spiffe/certificate.js';
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

export interface IdentitySource {
  current(): X509Identity;
  /** Called with each new identity after it passed validation; returns an unsubscribe function. */
  onUpdate(listener: (identity: X509Identity) => void): () => void;
  close(): Promise<void>;
}

/** Every authority of every bundle, as PEM: what OpenSSL may use to pre-check peer chains. */
export function allAuthoritiesPem(bundles: X509BundleSet): string[] {
  const pems: string[] = [];
  for (const bundle of bundles.values()) {
    for (const cert of bundle.authorities) pems.push(cert.node.toString());
  }
  return pems;
}
