// The gate every new mTLS connection passes, HTTP or TCP: refused while our identity is revoked, then the
// peer authenticated (authn/mtls.ts). A refused peer is logged (within the budget of rejection lines, with
// what its certificate claimed, unverified), counted and disconnected here, before a byte reaches the app.
import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { ProxyMetrics } from './proxy-metrics.js';
import { describePeer, type PeerIdentity } from '../authn/identity.js';
import { authenticateTlsPeer } from '../authn/mtls.js';
import { peerLeafDer } from '../authn/peer-certificates.js';
import type { IdentitySource } from '../identity/source.js';
import type { Logger } from '../log.js';
import type { X509BundleSet } from '../spiffe/bundle.js';
import { parseCertificate } from '../spiffe/certificate.js';
import { MAX_SPIFFE_ID_LENGTH, parseSpiffeId } from '../spiffe/id.js';
import { rejectionLine, suppressedField } from './rejection-log.js';

export type GateResult =
  | { admitted: true; identity: PeerIdentity }
  /** No certificate, admitted because the caller may authenticate per request instead (API keys). */
  | { admitted: true; identity: undefined }
  | { admitted: false };

export function admitPeer(
  socket: TLSSocket,
  identity: IdentitySource,
  previousBundles: X509BundleSet | undefined,
  log: Logger,
  metrics: ProxyMetrics,
  allowNoCertificate = false,
): GateResult {
  if (identity.status().reason === 'identity_revoked') {
    // Fail closed: the Workload API withdrew our identity, so we accept no one in its name.
    log.warn(
      { event: 'connection_refused', reason: 'identity_revoked', remote: socket.remoteAddress },
      'our identity is revoked',
    );
    metrics.handshake('failure', 'identity_revoked');
    socket.destroy();
    return { admitted: false };
  }
  const result = authenticateTlsPeer(socket, identity.current().bundles, Date.now(), previousBundles);
  if (!result.ok && result.rejection.reason === 'ERR_NO_CLIENT_CERT' && allowNoCertificate) {
    metrics.handshake('success', 'no_client_cert');
    return { admitted: true, identity: undefined };
  }
  if (!result.ok) {
    const dropped = rejectionLine(log, 'peer_rejected', metrics, undefined, socket.remoteAddress);
    if (dropped >= 0) {
      log.warn(
        {
          event: 'peer_rejected',
          reason: result.rejection.reason,
          remote: socket.remoteAddress,
          ...presentedCertificate(socket),
          suppressed: suppressedField(dropped),
        },
        result.rejection.message,
      );
    }
    metrics.handshake('failure', result.rejection.reason);
    socket.destroy();
    return { admitted: false };
  }
  metrics.handshake('success', 'verified');
  if (result.withoutKeyUsage) {
    // Once per leaf (then it is found verified): the issuer's mistake, for the operator to take up with it.
    log.warn(
      { event: 'peer_without_key_usage', peer: describePeer(result.identity), remote: socket.remoteAddress },
      'the peer certificate has no keyUsage extension (X509-SVID §4.3: an SVID sets digitalSignature); accepted',
    );
  }
  return { admitted: true, identity: result.identity };
}

/** What a rejected peer's leaf certificate says, unverified. */
export interface PresentedCertificate {
  /** The URI SAN, if it is a SPIFFE ID (at most 2048 characters): what the peer claims to be. */
  presented_id?: string;
  /** The leaf's serial number, lower-case hex. */
  serial?: string;
  /** SHA-256 of the leaf's DER, lower-case hex (as in XFCC's `Hash=`). */
  fingerprint_sha256?: string;
}

/**
 * The leaf a peer presented, for the log line of its rejection. Only ever read for a line that will be
 * written (the budget first): parsing a certificate costs more than the line. The URI SAN is read from
 * the ASN.1 (never Node's display string, which a crafted URI can forge) and kept only if it parses as a
 * SPIFFE ID.
 */
export function presentedCertificate(socket: TLSSocket): PresentedCertificate {
  const leaf = peerLeafDer(socket);
  if (!leaf) return {};
  const out: PresentedCertificate = { fingerprint_sha256: createHash('sha256').update(leaf).digest('hex') };
  try {
    const node = new X509Certificate(leaf);
    out.serial = node.serialNumber.toLowerCase();
    const uri = parseCertificate(leaf, 'peer leaf certificate', node).uris[0];
    if (uri !== undefined && uri.length <= MAX_SPIFFE_ID_LENGTH) out.presented_id = parseSpiffeId(uri).toString();
  } catch {
    // Not a certificate we can read, or not a SPIFFE ID: nothing claimed.
  }
  return out;
}

/**
 * `--log-level debug`: a connection past the handshake (and, for mTLS, the gate): who, and what TLS
 * agreed. The level is checked first, so that a connection costs nothing more when it is off.
 */
export function logConnectionAccepted(log: Logger, socket: TLSSocket, peer: PeerIdentity | undefined): void {
  if (!log.isLevelEnabled('debug')) return;
  log.debug(
    {
      event: 'connection_accepted',
      remote: socket.remoteAddress,
      peer: peer === undefined ? undefined : describePeer(peer),
      tls_version: socket.getProtocol() ?? undefined,
      alpn: socket.alpnProtocol || undefined,
      cipher: socket.getCipher()?.name,
      resumed: socket.isSessionReused(),
    },
    'connection accepted',
  );
}
