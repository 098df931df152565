// The certificates a TLS peer presented, read only by calls that copy them and leave the session as it is.
// Node's getPeerX509Certificate() is not one of them: on a server socket it takes every certificate after
// the leaf out of the session and never frees them (proxy/tls-intake.ts says what that cost us), so it is
// never called on a peer's socket.
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { DerReader, Tag } from '../spiffe/der.js';

/** OpenSSL's encoding of a session (ssl_asn1.c) holds the peer's certificate as `[3] EXPLICIT Certificate`. */
const SESSION_PEER = 0xa3;

function leafOfSession(session: Buffer): Buffer | undefined {
  const fields = new DerReader(session).enter(Tag.SEQUENCE, 'TLS session');
  while (!fields.done) {
    const field = fields.next();
    if (field.tag !== SESSION_PEER) continue;
    const inner = fields.inside(field);
    const certificate = inner.expect(Tag.SEQUENCE, 'peer certificate');
    inner.finish('peer certificate');
    return Buffer.from(session.subarray(field.start, certificate.end));
  }
  return undefined;
}

/**
 * The peer's leaf certificate (DER), or nothing when it sent none. It is read from the TLS session, which
 * carries it in a full handshake and a resumed one alike: ~12 µs, against ~46 µs for Node's copying
 * getPeerCertificate(), which also formats every field (Node 24). The session's bytes hold its secret:
 * they are overwritten as soon as the certificate is copied out.
 */
export function peerLeafDer(socket: TLSSocket): Buffer | undefined {
  const session = socket.getSession();
  if (session) {
    try {
      const leaf = leafOfSession(session);
      if (leaf) return leaf;
    } catch {
      // A session encoding we do not read: Node's copy below says the same.
    } finally {
      session.fill(0);
    }
  }
  const raw = (socket.getPeerCertificate(false) as Partial<DetailedPeerCertificate> | null)?.raw;
  return raw && raw.length > 0 ? raw : undefined;
}

/**
 * The peer's certificates (DER), leaf first, from Node's copying getPeerCertificate(true): the leaf, then
 * what the peer sent ordered by issuer name, completed from our trust store up to a root. ~100 µs for two
 * certificates, so it is read only for a leaf OpenSSL accepted and we have not seen verified under the
 * current bundles (authn/mtls.ts). At most `max` + 1 are returned: enough for the caller to refuse more.
 */
export function peerChainDer(socket: TLSSocket, max: number): Buffer[] {
  const chain: Buffer[] = [];
  let cert = socket.getPeerCertificate(true) as Partial<DetailedPeerCertificate> | null | undefined;
  while (cert?.raw && cert.raw.length > 0 && chain.length <= max) {
    chain.push(cert.raw);
    const next: Partial<DetailedPeerCertificate> | undefined = cert.issuerCertificate;
    // Node ends the chain at a self-signed certificate by making it its own issuer.
    if (!next || next === cert) break;
    cert = next;
  }
  return chain;
}
