// The TLS context of our listeners (HTTP and TCP): our SVID, every trusted authority for OpenSSL's
// pre-check of the peer's chain, and session resumption bounded by our identity.
import cluster from 'node:cluster';
import { constants, createHmac, randomBytes } from 'node:crypto';
import { allAuthoritiesPem, type X509Identity } from '../identity/source.js';

/** Longest a session may be resumed without a full handshake. */
const MAX_SESSION_SECONDS = 300;

/**
 * Session tickets are encrypted with keys derived from this secret and the identity material, so that
 * every new SVID or bundle set makes earlier tickets unreadable (their sessions were verified under the
 * old trust): a client then simply does a full handshake.
 */
const ticketSecret = randomBytes(32);

/**
 * With --workers, no resumption at all: a resumed session carries only the peer's leaf, so only the
 * process that verified the full chain can admit it (an SVID from an intermediate cannot be verified from
 * its leaf), and a TLS 1.3 ticket was seen resumed by another worker despite distinct ticket keys.
 */
const resumption = !cluster.isWorker;

/**
 * TLS 1.2 renegotiation is refused, as Go's crypto/tls and BoringSSL (ghostunnel, Envoy) refuse it: a caller could
 * make us redo handshakes at will on one connection (CPU at its pleasure), and a certificate presented in a
 * renegotiation would never be judged (identity is read once, at the gate). TLS 1.3 has no renegotiation.
 */
const NO_RENEGOTIATION = constants.SSL_OP_NO_RENEGOTIATION;

function ticketKeys(identity: X509Identity): Buffer {
  const hmac = createHmac('sha512', ticketSecret).update(identity.svid.chainPem);
  for (const pem of allAuthoritiesPem(identity.bundles)) hmac.update(pem);
  return hmac.digest().subarray(0, 48);
}

/** Everything of the TLS context; setSecureContext() rebuilds it from these options alone. */
export function serverTlsOptions(identity: X509Identity, now = Date.now()) {
  // A session outlives neither our SVID (half its remaining life) nor MAX_SESSION_SECONDS.
  const svidSecondsLeft = (identity.svid.chain[0].notAfter.getTime() - now) / 1000;
  return {
    minVersion: 'TLSv1.2' as const,
    cert: identity.svid.chainPem,
    key: identity.svid.keyPem,
    // OpenSSL pre-checks peer chains against every trusted authority (expiry, signatures, constraints,
    // purpose); authenticateTlsPeer requires that verdict and then re-verifies against the bundle of
    // the peer's own trust domain, which OpenSSL cannot do.
    ca: allAuthoritiesPem(identity.bundles),
    ...(resumption
      ? {
          ticketKeys: ticketKeys(identity),
          sessionTimeout: Math.max(1, Math.min(MAX_SESSION_SECONDS, Math.floor(svidSecondsLeft / 2))),
        }
      : {}),
    secureOptions: resumption ? NO_RENEGOTIATION : NO_RENEGOTIATION | constants.SSL_OP_NO_TICKET,
  };
}
