// The gate every new mTLS connection passes, HTTP or TCP: refused while our identity is revoked, then the
// peer authenticated (authn/mtls.ts). A refused peer is logged, counted and disconnected here, before a
// byte reaches the app.
import type { TLSSocket } from 'node:tls';
import type { ProxyMetrics } from './proxy-metrics.js';
import type { PeerIdentity } from '../authn/identity.js';
import { authenticateTlsPeer } from '../authn/mtls.js';
import type { IdentitySource } from '../identity/source.js';
import type { Logger } from '../log.js';
import type { X509BundleSet } from '../spiffe/bundle.js';

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
    log.warn(
      { event: 'peer_rejected', reason: result.rejection.reason, remote: socket.remoteAddress },
      result.rejection.message,
    );
    metrics.handshake('failure', result.rejection.reason);
    socket.destroy();
    return { admitted: false };
  }
  metrics.handshake('success', 'verified');
  return { admitted: true, identity: result.identity };
}
