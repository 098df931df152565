// The TLS context of our listeners (HTTP and TCP): our SVID, and every trusted authority for OpenSSL's
// pre-check of the peer's chain.
import { constants } from 'node:crypto';
import { allAuthoritiesPem, type X509Identity } from '../identity/source.js';

/** Everything of the TLS context; setSecureContext() rebuilds it from these options alone. */
export function serverTlsOptions(identity: X509Identity) {
  return {
    minVersion: 'TLSv1.2' as const,
    // No session resumption: a resumed session carries only the peer's leaf, not the intermediates it
    // sent, so its chain could not be verified again. Every connection is a full, verified handshake.
    secureOptions: constants.SSL_OP_NO_TICKET,
    cert: identity.svid.chainPem,
    key: identity.svid.keyPem,
    // OpenSSL pre-checks peer chains against every trusted authority (expiry, signatures, constraints,
    // purpose); authenticateTlsPeer requires that verdict and then re-verifies against the bundle of
    // the peer's own trust domain, which OpenSSL cannot do.
    ca: allAuthoritiesPem(identity.bundles),
  };
}
