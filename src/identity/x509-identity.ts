// Turns the parts of an identity (chain, key, bundles), from whatever source, into a validated
// X509Identity: the key matches the leaf, the leaf is an X509-SVID (of the expected trust domain, on a
// reload), and our own chain verifies against our own bundle. Throws a SidecarError saying what is wrong.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { SidecarError } from '../errors.js';
import type { X509Bundle } from '../spiffe/bundle.js';
import type { Certificate } from '../spiffe/certificate.js';
import type { SpiffeId } from '../spiffe/id.js';
import { checkLeafSvid, verifyX509SvidChain } from '../spiffe/x509svid.js';
import { allAuthoritiesPem, type X509Identity } from './source.js';

export interface IdentityParts {
  chain: Certificate[];
  key: KeyObject;
  /** Called with our trust domain once the leaf is known; returns every bundle, ours included. */
  bundles: (ownTrustDomain: string) => Map<string, X509Bundle>;
}

export interface AssembleOptions {
  /** How the chain and the key are named in errors, e.g. "--mtls-cert-file /etc/tls.crt". */
  certLabel: string;
  keyLabel: string;
  /** On a reload: the trust domain may not change under a running sidecar. */
  expectedTrustDomain?: string;
  now?: Date;
}

function publicKeyDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

function ownSvidError(label: string, err: unknown): SidecarError {
  const detail = err instanceof Error ? err.message : String(err);
  return new SidecarError('ERR_OWN_SVID_INVALID', `${label}: not a usable X509-SVID: ${detail}`, { cause: err });
}

export function assembleX509Identity(parts: IdentityParts, options: AssembleOptions): X509Identity {
  const { chain, key } = parts;
  if (!publicKeyDer(createPublicKey(key)).equals(publicKeyDer(chain[0].node.publicKey))) {
    throw new SidecarError(
      'ERR_KEY_MISMATCH',
      `${options.keyLabel}: leaf certificate does not match private key (${options.certLabel}); the two must be one pair`,
    );
  }
  let id: SpiffeId;
  try {
    id = checkLeafSvid(chain[0], { requireKeyUsage: true });
  } catch (err) {
    throw ownSvidError(options.certLabel, err);
  }
  if (options.expectedTrustDomain !== undefined && id.trustDomain !== options.expectedTrustDomain) {
    throw ownSvidError(
      options.certLabel,
      new Error(
        `its trust domain "${id.trustDomain}" is not ours ("${options.expectedTrustDomain}"); restart the sidecar to change trust domains`,
      ),
    );
  }
  const bundles = parts.bundles(id.trustDomain);
  // Our own chain must verify against our own bundle: catches a bundle of the wrong trust domain before
  // a peer does, and an expired certificate before a handshake fails on it.
  try {
    verifyX509SvidChain(chain, bundles, { now: options.now ?? new Date() });
  } catch (err) {
    throw ownSvidError(options.certLabel, err);
  }
  const identity: X509Identity = Object.freeze({
    svid: Object.freeze({
      id,
      chain,
      chainPem: chain.map((c) => c.node.toString()).join(''),
      keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    }),
    bundles,
  });
  // OpenSSL must accept the material too (key size, algorithms) before anyone swaps it in: a context it
  // refuses later, in setSecureContext, would be a crash instead of a kept identity.
  try {
    createSecureContext({ cert: identity.svid.chainPem, key: identity.svid.keyPem, ca: allAuthoritiesPem(bundles) });
  } catch (err) {
    throw ownSvidError(
      options.certLabel,
      new Error(`OpenSSL refuses it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`),
    );
  }
  return identity;
}
