// mTLS peer authentication, once per connection: the chain the peer presented is verified as an
// X509-SVID against the bundle of the peer's own trust domain (OpenSSL's check against the union of all
// bundles, done in the handshake, cannot tell trust domains apart). Results are cached per chain, so a
// peer that reconnects costs one hash and one map lookup.
import { createHash, type X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { isSidecarError } from '../errors.js';
import type { X509BundleSet } from '../spiffe/bundle.js';
import type { SpiffeId } from '../spiffe/id.js';
import { verifyX509SvidPeer } from '../spiffe/x509svid.js';
import type { PeerIdentity, Rejection } from './identity.js';

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

/** The certificates the peer sent: leaf first. */
function peerChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let cert: X509Certificate | undefined = socket.getPeerX509Certificate();
  while (cert && chain.length < MAX_PEER_CHAIN + 1) {
    chain.push(cert);
    const next: X509Certificate | undefined = cert.issuerCertificate;
    if (!next || next === cert || next.raw.equals(cert.raw)) break;
    cert = next;
  }
  return chain;
}

export type AuthnResult = { ok: true; identity: PeerIdentity } | { ok: false; rejection: Rejection };

function reject(reason: string, message: string): AuthnResult {
  return { ok: false, rejection: { reason, message } };
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
  const chain = peerChain(socket);
  if (chain.length === 0) return reject('ERR_NO_CLIENT_CERT', 'the peer presented no certificate');
  if (chain.length > MAX_PEER_CHAIN || chain.some((c) => c.raw.length > MAX_PEER_CERT_BYTES)) {
    return reject(
      'ERR_PEER_CHAIN_TOO_LARGE',
      `the peer sent more than ${MAX_PEER_CHAIN} certificates, or one larger than ${MAX_PEER_CERT_BYTES} bytes`,
    );
  }
  if (!socket.authorized) {
    // OpenSSL's verdict against the union of all bundles: an OpenSSL verify code such as
    // CERT_HAS_EXPIRED or UNABLE_TO_GET_ISSUER_CERT_LOCALLY (a bounded set).
    const code = String(socket.authorizationError ?? 'ERR_CHAIN_UNTRUSTED');
    if (code === 'UNSPECIFIED') {
      // Node names only some of OpenSSL's verify errors (an unknown critical extension, a name-constraint
      // violation or a signer without keyCertSign come out as UNSPECIFIED): our verifier says which rule.
      // The peer is refused either way.
      try {
        verifyX509SvidPeer(chain, bundles, { now: new Date(now) });
      } catch (err) {
        if (isSidecarError(err)) return reject(err.code, `${err.message} (OpenSSL: UNSPECIFIED)`);
      }
    }
    return reject(code, `the peer certificate failed TLS verification: ${code}`);
  }
  const leafSha256 = createHash('sha256').update(chain[0].raw).digest('hex');
  const cache = cacheFor(bundles);
  if (socket.isSessionReused()) {
    // A resumed session carries the peer's leaf but not the intermediates it sent: it is accepted only
    // if that leaf was verified in a full handshake under this bundle set, or verifies alone. Tickets
    // do not outlive an identity change (see server-tls.ts), except for a handshake that raced the
    // change: accepted under the previous context, authenticated after it. That one was verified
    // under the previous bundle set, which is asked too.
    const key = `leaf:${leafSha256}`;
    const verified = cache.get(key) ?? (previousBundles ? cacheFor(previousBundles).get(key) : undefined);
    if (verified && now >= verified.notBefore && now <= verified.notAfter) {
      return { ok: true, identity: { id: verified.id, method: 'mtls', leafSha256, notAfter: verified.notAfter } };
    }
  }
  const key =
    chain.length === 1
      ? leafSha256
      : `${leafSha256}:${chain
          .slice(1)
          .reduce((h, c) => h.update(c.raw), createHash('sha256'))
          .digest('hex')}`;
  const hit = cache.get(key);
  if (hit && now >= hit.notBefore && now <= hit.notAfter) {
    return { ok: true, identity: { id: hit.id, method: 'mtls', leafSha256, notAfter: hit.notAfter } };
  }
  try {
    const { id, path } = verifyX509SvidPeer(chain, bundles, { now: new Date(now) });
    while (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    const entry = {
      id,
      notBefore: Math.max(...path.map((c) => c.notBefore.getTime())),
      notAfter: Math.min(...path.map((c) => c.notAfter.getTime())),
    };
    cache.set(key, entry);
    cache.set(`leaf:${leafSha256}`, entry);
    return { ok: true, identity: { id, method: 'mtls', leafSha256, notAfter: entry.notAfter } };
  } catch (err) {
    if (isSidecarError(err))
      return reject(err.code, socket.isSessionReused() ? `${err.message} (resumed session)` : err.message);
    return reject('ERR_INTERNAL', `peer verification failed unexpectedly: ${(err as Error).message}`);
  }
}
