// mTLS peer authentication, once per connection: the chain the peer presented is verified as an
// X509-SVID against the bundle of the peer's own trust domain (OpenSSL's check against the union of all
// bundles, done in the handshake, cannot tell trust domains apart). Results are cached per leaf, so a
// peer that reconnects costs one read of its leaf, one hash and one map lookup.
import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { isSidecarError, SidecarError } from '../errors.js';
import type { X509BundleSet } from '../spiffe/bundle.js';
import type { SpiffeId } from '../spiffe/id.js';
import { verifyX509SvidPeer } from '../spiffe/x509svid.js';
import type { PeerIdentity, Rejection } from './identity.js';
import { peerChainDer, peerLeafDer } from './peer-certificates.js';

/** A peer sends leaf + intermediates; more, or larger, is not a SPIFFE deployment but a CPU attack. */
const MAX_PEER_CHAIN = 8;
const MAX_PEER_CERT_BYTES = 16 * 1024;
const CACHE_SIZE = 4096;

interface CachedVerification {
  id: SpiffeId;
  notBefore: number;
  notAfter: number;
}

/** One cache per bundle set: a rotated bundle set is a new object, so old results can never leak across. */
const caches = new WeakMap<X509BundleSet, Map<string, CachedVerification>>();

function cacheFor(bundles: X509BundleSet): Map<string, CachedVerification> {
  let cache = caches.get(bundles);
  if (!cache) {
    cache = new Map();
    caches.set(bundles, cache);
  }
  return cache;
}

export type AuthnResult =
  | {
      ok: true;
      identity: PeerIdentity;
      /**
       * The leaf was verified now (not found verified) and has no keyUsage extension: accepted, as RFC 5280
       * reads it, but X509-SVID §4.3 says an SVID sets digitalSignature (VERIFIER-RULES B8: log it for peers).
       */
      withoutKeyUsage?: true;
    }
  | { ok: false; rejection: Rejection };

function reject(reason: string, message: string): AuthnResult {
  return { ok: false, rejection: { reason, message } };
}

const TOO_LARGE = `the peer sent more than ${MAX_PEER_CHAIN} certificates, or one larger than ${MAX_PEER_CERT_BYTES} bytes`;

function tooLarge(): AuthnResult {
  return reject('ERR_PEER_CHAIN_TOO_LARGE', TOO_LARGE);
}

function openSslCertificate(der: Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw new SidecarError('ERR_CERT_PARSE', `${what}: not a valid X.509 certificate (${(err as Error).message})`);
  }
}

/**
 * The peer's chain, leaf first, as OpenSSL objects for the path search: at most MAX_PEER_CHAIN, counting
 * the root (the peer's own, or the one Node completes the chain with from our trust store), as a path is
 * at most that long (spiffe/x509svid.ts). Throws a SidecarError.
 */
function peerCertificates(socket: TLSSocket): X509Certificate[] {
  const chain = peerChainDer(socket, MAX_PEER_CHAIN);
  if (chain.length > MAX_PEER_CHAIN || chain.some((der) => der.length > MAX_PEER_CERT_BYTES)) {
    throw new SidecarError('ERR_PEER_CHAIN_TOO_LARGE', TOO_LARGE);
  }
  return chain.map((der, i) => openSslCertificate(der, i === 0 ? 'peer leaf certificate' : `peer certificate ${i}`));
}

/**
 * Authenticates the peer of a completed TLS handshake (the server runs with rejectUnauthorized: false
 * so that every rejection passes through here and is logged with its reason). Never throws.
 */
export function authenticateTlsPeer(
  socket: TLSSocket,
  bundles: X509BundleSet,
  now = Date.now(),
  previousBundles?: X509BundleSet,
): AuthnResult {
  const leaf = peerLeafDer(socket);
  if (!leaf) return reject('ERR_NO_CLIENT_CERT', 'the peer presented no certificate');
  if (leaf.length > MAX_PEER_CERT_BYTES) return tooLarge();
  if (!socket.authorized) {
    // OpenSSL's verdict against the union of all bundles: an OpenSSL verify code such as
    // CERT_HAS_EXPIRED or UNABLE_TO_GET_ISSUER_CERT_LOCALLY (a bounded set).
    const code = String(socket.authorizationError ?? 'ERR_CHAIN_UNTRUSTED');
    if (code === 'UNSPECIFIED') {
      // Node names only some of OpenSSL's verify errors (an unknown critical extension, a name-constraint
      // violation or a signer without keyCertSign come out as UNSPECIFIED): our verifier says which rule.
      // The peer is refused either way, and unverified: its leaf alone is judged, as reading a chain it
      // chose costs Node ~0.1 ms a certificate.
      try {
        verifyX509SvidPeer([openSslCertificate(leaf, 'peer leaf certificate')], bundles, { now: new Date(now) });
      } catch (err) {
        if (isSidecarError(err)) return reject(err.code, `${err.message} (OpenSSL: UNSPECIFIED)`);
      }
    }
    return reject(code, `the peer certificate failed TLS verification: ${code}`);
  }
  const leafSha256 = createHash('sha256').update(leaf).digest('hex');
  const resumed = socket.isSessionReused();
  // A leaf verified once under this bundle set stands for itself: its signature binds it to the path found
  // then, and OpenSSL has checked whatever chain came with it this time (so its length is not judged
  // again). A resumed session carries the peer's leaf but not the intermediates it sent, so it is accepted
  // only if that leaf was verified in a full handshake, or verifies alone. Tickets do not outlive an identity change (see server-tls.ts),
  // except for a handshake that raced the change: accepted under the previous context, authenticated
  // after it. That one was verified under the previous bundle set, which is asked too.
  const verified =
    cacheFor(bundles).get(leafSha256) ??
    (resumed && previousBundles ? cacheFor(previousBundles).get(leafSha256) : undefined);
  if (verified && now >= verified.notBefore && now <= verified.notAfter) {
    return { ok: true, identity: { id: verified.id, method: 'mtls', leafSha256, notAfter: verified.notAfter } };
  }
  try {
    const { id, path } = verifyX509SvidPeer(peerCertificates(socket), bundles, { now: new Date(now) });
    const cache = cacheFor(bundles);
    while (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    const entry = {
      id,
      notBefore: Math.max(...path.map((c) => c.notBefore.getTime())),
      notAfter: Math.min(...path.map((c) => c.notAfter.getTime())),
    };
    cache.set(leafSha256, entry);
    const identity: PeerIdentity = { id, method: 'mtls', leafSha256, notAfter: entry.notAfter };
    return path[0]?.keyUsage === undefined ? { ok: true, identity, withoutKeyUsage: true } : { ok: true, identity };
  } catch (err) {
    if (isSidecarError(err)) return reject(err.code, resumed ? `${err.message} (resumed session)` : err.message);
    return reject('ERR_INTERNAL', `peer verification failed unexpectedly: ${(err as Error).message}`);
  }
}
