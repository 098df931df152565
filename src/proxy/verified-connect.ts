// Outbound TLS to a remote that must prove an identity: our current SVID as the client certificate (mTLS
// routes), the remote's chain verified against the bundle of its own trust domain, and its SPIFFE ID
// against the route's rule; never a DNS name check (VERIFIER-RULES B14). The socket is handed over only
// once all of that holds, so not one byte goes to an unverified peer.
import { constants } from 'node:crypto';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { authenticateTlsPeer } from '../authn/mtls.js';
import { certificateAlertOf } from './connection-accounting.js';
import { allAuthoritiesPem, type IdentitySource } from '../identity/source.js';
import type { Logger } from '../log.js';
import type { IdMatcher } from '../spiffe/match.js';

/** Why a remote was refused: `reason` is bounded (logs, metrics). */
export class RemoteIdentityError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export interface VerifiedRemote {
  /** mtls: present our SVID; jwt: no client certificate (a token is sent instead). */
  auth: 'mtls' | 'jwt';
  expect: IdMatcher | undefined;
  expectText: string | undefined;
  limits: { handshakeTimeoutMs: number };
}

/**
 * Opens TLS with `options` (host, port, servername...) and calls `done` once: with null when the remote
 * is verified, or with a RemoteIdentityError (the socket is then destroyed). `log` hears of an accepted remote
 * whose leaf has no keyUsage, as the peer gate does of a caller's.
 */
export function connectVerified(
  identity: IdentitySource | undefined,
  route: VerifiedRemote,
  options: ConnectionOptions,
  alpn: string[],
  log: Logger,
  done: (err: Error | null) => void,
): TLSSocket {
  const current = identity?.current();
  const socket = tlsConnect({
    ...options,
    // Our current SVID for new connections: a rotation applies to the next connection, pooled ones
    // drain naturally. JWT routes present no client certificate.
    ...(route.auth === 'mtls' && current ? { cert: current.svid.chainPem, key: current.svid.keyPem } : {}),
    ca: current ? allAuthoritiesPem(current.bundles) : undefined,
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
    ALPNProtocols: alpn,
    minVersion: 'TLSv1.2',
    // A remote that renegotiates could present a certificate we never judged: refused (server-tls.ts).
    secureOptions: constants.SSL_OP_NO_TICKET | constants.SSL_OP_NO_RENEGOTIATION,
  });
  let settled = false;
  const handshake = setTimeout(
    () => finish(new RemoteIdentityError('remote_unreachable', 'the TLS handshake with the remote timed out')),
    route.limits.handshakeTimeoutMs,
  );
  const finish = (err: Error | null) => {
    if (settled) return;
    settled = true;
    clearTimeout(handshake);
    if (err) socket.destroy();
    done(err);
  };
  // TLS 1.2: the remote's alert refusing our certificate ends the handshake itself.
  socket.once('error', (err) =>
    finish(
      certificateAlertOf(err) !== undefined
        ? new RemoteIdentityError(
            'remote_refused_our_certificate',
            `the remote refused our certificate: ${err.message}`,
          )
        : err,
    ),
  );
  socket.once('secureConnect', () => {
    // Judged under the trust of now, not of when the handshake began: bundles that changed meanwhile (a CA
    // removed) apply to this connection too, as to every request after the change.
    const trust = identity?.current();
    if (!trust) return finish(new RemoteIdentityError('no_identity', 'no trust bundles to verify the remote with'));
    const result = authenticateTlsPeer(socket, trust.bundles);
    if (!result.ok) return finish(new RemoteIdentityError(result.rejection.reason, result.rejection.message));
    const id = result.identity.id as NonNullable<typeof result.identity.id>;
    if (route.expect && route.expect(id) === undefined) {
      return finish(
        new RemoteIdentityError('remote_identity_mismatch', `the remote is ${id}, not ${route.expectText}`),
      );
    }
    if (result.withoutKeyUsage) {
      // Once per leaf (then it is found verified), as for callers (peer-gate.ts): the remote's issuer's mistake.
      log.warn(
        { event: 'remote_without_key_usage', remote: `${options.host}:${options.port}`, id: String(id) },
        'the remote certificate has no keyUsage extension (X509-SVID §4.3: an SVID sets digitalSignature); accepted',
      );
    }
    finish(null);
  });
  return socket;
}
