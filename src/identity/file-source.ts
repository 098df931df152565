// File mode: our X509-SVID, its key and the trust bundles come from PEM files (a Kubernetes Secret
// mount: tls.crt, tls.key, ca.crt). Everything is read and validated as one unit before it is used;
// a problem throws a SidecarError that names the flag and the file.
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SidecarError } from '../errors.js';
import { parseX509BundlePem, type X509Bundle } from '../spiffe/bundle.js';
import { parsePemCertificates } from '../spiffe/certificate.js';
import { checkLeafSvid, verifyX509SvidChain } from '../spiffe/x509svid.js';
import type { IdentitySource, X509Identity } from './source.js';

export interface FileIdentityOptions {
  certFile: string;
  keyFile: string;
  caFile: string;
  federatedBundles: readonly { trustDomain: string; file: string }[];
}

async function readFlagFile(flag: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new SidecarError('ERR_FILE_READ', `${flag} ${file}: cannot read the file (${why})`, { cause: err });
  }
}

function ownSvidError(flag: string, file: string, err: unknown): SidecarError {
  const detail = err instanceof Error ? err.message : String(err);
  return new SidecarError('ERR_OWN_SVID_INVALID', `${flag} ${file}: not a usable X509-SVID: ${detail}`, { cause: err });
}

function publicKeyDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

/** Reads and validates the files; resolves to an identity only if every part is good. */
export async function loadFileIdentity(options: FileIdentityOptions, now = new Date()): Promise<X509Identity> {
  const [certPem, keyPem, caPem, ...federatedPems] = await Promise.all([
    readFlagFile('--mtls-cert-file', options.certFile),
    readFlagFile('--mtls-key-file', options.keyFile),
    readFlagFile('--mtls-ca-file', options.caFile),
    ...options.federatedBundles.map((b) => readFlagFile(`--federated-bundle ${b.trustDomain}=`, b.file)),
  ]);

  const chain = parsePemCertificates(certPem, `--mtls-cert-file ${options.certFile}`);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new SidecarError(
      'ERR_KEY_PARSE',
      `--mtls-key-file ${options.keyFile}: not a PEM private key (${(err as Error).message})`,
      { cause: err },
    );
  }
  if (!publicKeyDer(createPublicKey(key)).equals(publicKeyDer(chain[0].node.publicKey))) {
    throw new SidecarError(
      'ERR_KEY_MISMATCH',
      `--mtls-key-file ${options.keyFile}: leaf certificate does not match private key (--mtls-cert-file ${options.certFile}); the two files must be one pair`,
    );
  }
  let id: ReturnType<typeof checkLeafSvid>;
  try {
    id = checkLeafSvid(chain[0], { requireKeyUsage: true });
  } catch (err) {
    throw ownSvidError('--mtls-cert-file', options.certFile, err);
  }

  const bundles = new Map<string, X509Bundle>();
  bundles.set(id.trustDomain, parseX509BundlePem(id.trustDomain, caPem, `--mtls-ca-file ${options.caFile}`));
  options.federatedBundles.forEach(({ trustDomain, file }, i) => {
    if (bundles.has(trustDomain)) {
      throw new SidecarError(
        'ERR_CONFIG_INVALID',
        `--federated-bundle ${trustDomain}=${file}: trust domain "${trustDomain}" already has a bundle (our own trust domain comes from --mtls-ca-file)`,
      );
    }
    bundles.set(
      trustDomain,
      parseX509BundlePem(trustDomain, federatedPems[i], `--federated-bundle ${trustDomain}=${file}`),
    );
  });

  // Our own chain must verify against our own bundle: catches a CA file of the wrong trust domain
  // before a peer does, and an expired certificate before a handshake fails on it.
  try {
    verifyX509SvidChain(chain, bundles, { now });
  } catch (err) {
    throw ownSvidError('--mtls-cert-file', options.certFile, err);
  }

  return Object.freeze({
    svid: Object.freeze({
      id,
      chain,
      chainPem: chain.map((c) => c.node.toString()).join(''),
      keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    }),
    bundles,
  });
}

/** A file identity source loaded once at startup. */
export class FileIdentitySource implements IdentitySource {
  private identity: X509Identity;
  private readonly listeners = new Set<(identity: X509Identity) => void>();

  private constructor(
    readonly options: FileIdentityOptions,
    identity: X509Identity,
  ) {
    this.identity = identity;
  }

  static async open(options: FileIdentityOptions): Promise<FileIdentitySource> {
    return new FileIdentitySource(options, await loadFileIdentity(options));
  }

  current(): X509Identity {
    return this.identity;
  }

  onUpdate(listener: (identity: X509Identity) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
