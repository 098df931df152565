// X.509 trust bundles, one per trust domain and never merged (Trust Domain and Bundle §6.2, Federation §4.2):
// a peer is only ever checked against the bundle of its own trust domain. Bad bundles throw ERR_BUNDLE_INVALID.
import { SidecarError } from '../errors.js';
import { type Certificate, parsePemCertificates } from './certificate.js';
import { parseSpiffeId, parseTrustDomain } from './id.js';

export interface X509Bundle {
  readonly trustDomain: string;
  /** The X.509 authorities (trust anchors) of the trust domain. */
  readonly authorities: readonly Certificate[];
}

/** Bundles keyed by trust domain name. */
export type X509BundleSet = ReadonlyMap<string, X509Bundle>;

/**
 * Makes the bundle of one trust domain from its authorities. Every certificate must be a CA. A
 * certificate that names a SPIFFE ID of another trust domain means the source merges several trust
 * domains (spiffe-helper's `include_federated_domains` output, for one): that is refused, since a merged
 * store lets a CA of one trust domain vouch for IDs of another.
 */
export function x509BundleFromCertificates(
  trustDomain: string,
  authorities: Certificate[],
  source: string,
): X509Bundle {
  authorities.forEach((cert, i) => {
    const where = `${source} (certificate ${i + 1})`;
    if (!cert.isCA) {
      throw new SidecarError(
        'ERR_BUNDLE_INVALID',
        `${where} is not a CA certificate (basicConstraints cA is not true): a trust bundle holds the CA roots of a trust domain, not a workload certificate`,
      );
    }
    for (const uri of cert.uris) {
      let td: string | undefined;
      try {
        td = parseSpiffeId(uri).trustDomain;
      } catch {
        continue; // a non-SPIFFE URI on a CA says nothing about trust domains
      }
      if (td !== trustDomain) {
        throw new SidecarError(
          'ERR_BUNDLE_INVALID',
          `${where} is a CA of trust domain "${td}", but it was given as the bundle of "${trustDomain}": give each trust domain its own bundle (--federated-bundle ${td}=FILE)`,
        );
      }
    }
  });
  return Object.freeze({ trustDomain, authorities: Object.freeze(authorities) });
}

/** Parses a PEM bundle for one trust domain (see x509BundleFromCertificates). */
export function parseX509BundlePem(trustDomain: string, pem: string, source: string): X509Bundle {
  return x509BundleFromCertificates(trustDomain, parsePemCertificates(pem, source), source);
}

/** Builds a bundle set from a map of trust domain (name or `spiffe://` ID) to PEM roots. */
export function x509BundleSetFromPem(bundles: Record<string, string>): X509BundleSet {
  const set = new Map<string, X509Bundle>();
  for (const [key, pem] of Object.entries(bundles)) {
    const td = parseTrustDomain(key);
    if (set.has(td)) {
      throw new SidecarError('ERR_BUNDLE_INVALID', `trust domain "${td}" is given more than one bundle`);
    }
    set.set(td, parseX509BundlePem(td, pem, `bundle of "${td}"`));
  }
  return set;
}
