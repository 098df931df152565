// A TLS listener following our identity's rotation (HTTP and TCP inbound): each new identity becomes the
// context of new connections (open ones finish on the old), and the bundle set of the context before it
// is kept for the peers accepted under it. A revocation is only passed on: what to end is the caller's.
import type { SecureContextOptions } from 'node:tls';
import type { IdentitySource } from '../identity/source.js';
import type { X509BundleSet } from '../spiffe/bundle.js';
import { serverTlsOptions } from './server-tls.js';

export interface FollowRotationOptions {
  /** The bundle set of the context the server was created with (see `previousBundles`). */
  initialBundles: X509BundleSet | undefined;
  /** SPIRE mode: our identity was withdrawn. */
  onRevoked?: () => void;
}

export interface RotationFollower {
  /**
   * The bundle set of the context before the current one: a connection accepted under it may be
   * authenticated after a rotation, and must be judged by the trust it was accepted under (authn/mtls.ts).
   */
  previousBundles(): X509BundleSet | undefined;
  /** Stop following: later identities and revocations no longer reach the target or `onRevoked`. */
  stop(): void;
}

/** Where new connections get their TLS context: our listeners' intake (tls-intake.ts), or a tls.Server. */
export interface SecureContextTarget {
  setSecureContext(options: SecureContextOptions): void;
}

export function followRotation(
  target: SecureContextTarget,
  identity: IdentitySource,
  { initialBundles, onRevoked }: FollowRotationOptions,
): RotationFollower {
  let current = initialBundles;
  let previous: X509BundleSet | undefined;
  // setSecureContext() changes the context for new connections only: exactly what a rotation needs.
  const offUpdate = identity.onUpdate((next) => {
    previous = current;
    current = next.bundles;
    target.setSecureContext(serverTlsOptions(next));
  });
  const offRevoke = (onRevoked && identity.onRevoked?.(onRevoked)) ?? (() => {});
  return {
    previousBundles: () => previous,
    stop: () => {
      offUpdate();
      offRevoke();
    },
  };
}
