// File mode: our X509-SVID, its key and the trust bundles come from PEM files (a Kubernetes Secret
// mount: tls.crt, tls.key, ca.crt). Everything is read and validated as one unit before it is used: at
// startup a problem throws a SidecarError naming the flag and the file; on reload it keeps the last good.
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isSidecarError, SidecarError } from '../errors.js';
import type { Logger } from '../log.js';
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

/** The raw text of every file, read in one go so that cert and key are taken as a pair. */
export interface FileIdentityTexts {
  certPem: string;
  keyPem: string;
  caPem: string;
  federatedPems: string[];
}

export async function readFileIdentity(options: FileIdentityOptions): Promise<FileIdentityTexts> {
  const [certPem, keyPem, caPem, ...federatedPems] = await Promise.all([
    readFlagFile('--mtls-cert-file', options.certFile),
    readFlagFile('--mtls-key-file', options.keyFile),
    readFlagFile('--mtls-ca-file', options.caFile),
    ...options.federatedBundles.map((b) => readFlagFile(`--federated-bundle ${b.trustDomain}=`, b.file)),
  ]);
  return { certPem, keyPem, caPem, federatedPems };
}

/** A digest of the texts: a reload that reads the same bytes changes nothing. */
export function fingerprintOf(texts: FileIdentityTexts): string {
  const hash = createHash('sha256');
  for (const text of [texts.certPem, texts.keyPem, texts.caPem, ...texts.federatedPems]) {
    hash.update(String(text.length)).update(':').update(text);
  }
  return hash.digest('hex');
}

/**
 * Validates the texts as one identity: the key matches the leaf, the leaf is an X509-SVID (of
 * `expectedTrustDomain` when given: a reload may not move us to another trust domain), every bundle
 * parses, and our chain verifies against our own bundle at `now`.
 */
export function parseFileIdentity(
  options: FileIdentityOptions,
  texts: FileIdentityTexts,
  { now = new Date(), expectedTrustDomain }: { now?: Date; expectedTrustDomain?: string } = {},
): X509Identity {
  const { certPem, keyPem, caPem, federatedPems } = texts;
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
  if (expectedTrustDomain !== undefined && id.trustDomain !== expectedTrustDomain) {
    throw ownSvidError(
      '--mtls-cert-file',
      options.certFile,
      new Error(
        `its trust domain "${id.trustDomain}" is not ours ("${expectedTrustDomain}"); restart the sidecar to change trust domains`,
      ),
    );
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

/** Reads and validates the files; resolves to an identity only if every part is good. */
export async function loadFileIdentity(options: FileIdentityOptions, now = new Date()): Promise<X509Identity> {
  return parseFileIdentity(options, await readFileIdentity(options), { now });
}

export type ReloadOutcome = 'updated' | 'unchanged' | 'failed';

export interface ReloadResult {
  outcome: ReloadOutcome;
  /** What asked for the reload: `watch`, `SIGHUP`, `interval`, ... */
  trigger: string;
  error?: SidecarError;
}

/** The longest delay setTimeout accepts; an expiry further away is re-armed when it comes closer. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * File identity source with validate-then-swap reloads: a reload reads every file, validates them as one
 * identity and swaps only if all is good and something changed. A failed reload keeps the last good
 * identity, logs why and is counted; it never throws and never exits.
 */
export class FileIdentitySource implements IdentitySource {
  readonly reloads: Record<ReloadOutcome, number> = { updated: 0, unchanged: 0, failed: 0 };
  private identity: X509Identity;
  private fingerprint: string;
  private queue: Promise<unknown> = Promise.resolve();
  private expiryTimer: NodeJS.Timeout | undefined;
  private expired = false;
  private readonly listeners = new Set<(identity: X509Identity) => void>();

  private constructor(
    readonly options: FileIdentityOptions,
    private readonly log: Logger,
    texts: FileIdentityTexts,
    identity: X509Identity,
  ) {
    this.identity = identity;
    this.fingerprint = fingerprintOf(texts);
    this.armExpiry();
  }

  /** Loads the files once; startup fails (throws) if they are not a valid identity. */
  static async open(options: FileIdentityOptions, log: Logger): Promise<FileIdentitySource> {
    const texts = await readFileIdentity(options);
    return new FileIdentitySource(options, log, texts, parseFileIdentity(options, texts));
  }

  current(): X509Identity {
    return this.identity;
  }

  /** Ready while our SVID is within its validity; a reload with a fresh one makes it ready again. */
  status(): { ready: boolean; reason?: 'svid_expired' } {
    return this.expired || Date.now() > this.identity.svid.chain[0].notAfter.getTime()
      ? { ready: false, reason: 'svid_expired' }
      : { ready: true };
  }

  onUpdate(listener: (identity: X509Identity) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Re-reads the files; reloads run one at a time, in order. */
  reload(trigger: string): Promise<ReloadResult> {
    const next = this.queue.then(() => this.reloadNow(trigger));
    this.queue = next;
    return next;
  }

  async close(): Promise<void> {
    clearTimeout(this.expiryTimer);
    this.listeners.clear();
    await this.queue;
  }

  private async reloadNow(trigger: string): Promise<ReloadResult> {
    let texts: FileIdentityTexts;
    let identity: X509Identity;
    try {
      texts = await readFileIdentity(this.options);
      if (fingerprintOf(texts) === this.fingerprint) {
        this.reloads.unchanged++;
        return { outcome: 'unchanged', trigger };
      }
      identity = parseFileIdentity(this.options, texts, { expectedTrustDomain: this.identity.svid.id.trustDomain });
    } catch (err) {
      const error = isSidecarError(err)
        ? err
        : new SidecarError('ERR_FILE_READ', `reload failed: ${(err as Error).message}`, { cause: err });
      this.reloads.failed++;
      this.log.warn(
        { event: 'reload_failed', trigger, reason: error.code, serial: this.identity.svid.chain[0].serialNumber },
        `identity reload failed, keeping the last good identity: ${error.message}`,
      );
      return { outcome: 'failed', trigger, error };
    }
    this.identity = identity;
    this.fingerprint = fingerprintOf(texts);
    this.reloads.updated++;
    this.armExpiry();
    const leaf = identity.svid.chain[0];
    this.log.info(
      {
        event: 'identity_updated',
        trigger,
        spiffe_id: identity.svid.id.toString(),
        serial: leaf.serialNumber,
        not_after: leaf.notAfter.toISOString(),
        trust_domains: [...identity.bundles.keys()],
      },
      'identity updated',
    );
    for (const listener of this.listeners) listener(identity);
    return { outcome: 'updated', trigger };
  }

  /** Logs once when our SVID expires without a replacement; from then on status() is not ready. */
  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expired = false;
    const leaf = this.identity.svid.chain[0];
    const delay = leaf.notAfter.getTime() - Date.now() + 1;
    if (delay <= 0) {
      this.markExpired();
      return;
    }
    this.expiryTimer = setTimeout(
      () => (delay > MAX_TIMER_MS ? this.armExpiry() : this.markExpired()),
      Math.min(delay, MAX_TIMER_MS),
    );
    this.expiryTimer.unref();
  }

  private markExpired(): void {
    this.expired = true;
    const leaf = this.identity.svid.chain[0];
    this.log.warn(
      { event: 'svid_expired', serial: leaf.serialNumber, not_after: leaf.notAfter.toISOString() },
      'our SVID has expired and no valid replacement was found: peers will refuse new connections; the sidecar is not ready',
    );
  }
}
