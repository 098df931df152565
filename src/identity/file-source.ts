// File mode: our X509-SVID, its key and the trust bundles come from PEM files (a Kubernetes Secret
// mount: tls.crt, tls.key, ca.crt). Everything is read and validated as one unit before it is used: at
// startup a problem throws a SidecarError naming the flag and the file; on reload it keeps the last good.
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { isSidecarError, SidecarError } from '../errors.js';
import { readFlagFile } from '../flag-file.js';
import type { Logger } from '../log.js';
import { logFileUnchanged, type ReloadOutcome } from '../reloading-file.js';
import { parseX509BundlePem, type X509Bundle } from '../spiffe/bundle.js';
import { parsePemCertificates } from '../spiffe/certificate.js';
import { ExpiryWatch, chainNotAfter } from './expiry.js';
import {
  type IdentitySource,
  type IdentitySourceStats,
  type IdentityStatus,
  notifyAll,
  type X509Identity,
} from './source.js';
import { assembleX509Identity } from './x509-identity.js';

export interface FileIdentityOptions {
  certFile: string;
  keyFile: string;
  caFile: string;
  federatedBundles: readonly { trustDomain: string; file: string }[];
}

/** The raw text of every file, read in one go so that cert and key are taken as a pair. */
export interface FileIdentityTexts {
  certPem: string;
  keyPem: string;
  caPem: string;
  /** Each federated bundle file's text, or the error reading it. */
  federatedPems: (string | SidecarError)[];
}

export async function readFileIdentity(options: FileIdentityOptions): Promise<FileIdentityTexts> {
  const [certPem, keyPem, caPem] = await Promise.all([
    readFlagFile('--mtls-cert-file', options.certFile),
    readFlagFile('--mtls-key-file', options.keyFile),
    readFlagFile('--mtls-ca-file', options.caFile),
  ]);
  // A federated bundle that cannot be read must not stop our own rotation: parseFileIdentity decides.
  const federatedPems = await Promise.all(
    options.federatedBundles.map((b) =>
      readFlagFile(`--federated-bundle ${b.trustDomain}=`, b.file).catch((err: SidecarError) => err),
    ),
  );
  return { certPem, keyPem, caPem, federatedPems };
}

/** A digest of the texts: a reload that reads the same bytes changes nothing. */
export function fingerprintOf(texts: FileIdentityTexts): string {
  const hash = createHash('sha256');
  for (const item of [texts.certPem, texts.keyPem, texts.caPem, ...texts.federatedPems]) {
    const text = typeof item === 'string' ? item : `\0error:${item.message}`;
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
  {
    now,
    expectedTrustDomain,
    onFederatedProblem,
  }: {
    now?: Date;
    expectedTrustDomain?: string;
    /**
     * On a reload: a federated bundle that is missing or broken drops that trust domain (its peers are
     * refused: fail closed) and is reported here, instead of failing the whole reload. At startup
     * (undefined) it is an error.
     */
    onFederatedProblem?: (trustDomain: string, error: SidecarError) => void;
  } = {},
): X509Identity {
  const chain = parsePemCertificates(texts.certPem, `--mtls-cert-file ${options.certFile}`);
  let key: KeyObject;
  try {
    key = createPrivateKey(texts.keyPem);
  } catch (err) {
    throw new SidecarError(
      'ERR_KEY_PARSE',
      `--mtls-key-file ${options.keyFile}: not a PEM private key (${(err as Error).message})`,
      { cause: err },
    );
  }
  const bundles = (ownTrustDomain: string) => {
    const set = new Map<string, X509Bundle>();
    set.set(ownTrustDomain, parseX509BundlePem(ownTrustDomain, texts.caPem, `--mtls-ca-file ${options.caFile}`));
    options.federatedBundles.forEach(({ trustDomain, file }, i) => {
      if (set.has(trustDomain)) {
        throw new SidecarError(
          'ERR_CONFIG_INVALID',
          `--federated-bundle ${trustDomain}=${file}: trust domain "${trustDomain}" already has a bundle (our own trust domain comes from --mtls-ca-file)`,
        );
      }
      const source = `--federated-bundle ${trustDomain}=${file}`;
      try {
        const text = texts.federatedPems[i];
        if (typeof text !== 'string') throw text;
        // An empty file is an empty bundle (Bundle §4.1.3): every SVID of that trust domain is refused.
        const bundle =
          text.trim() === '' ? { trustDomain, authorities: [] } : parseX509BundlePem(trustDomain, text, source);
        set.set(trustDomain, bundle);
      } catch (err) {
        if (!onFederatedProblem || !isSidecarError(err)) throw err;
        onFederatedProblem(trustDomain, err);
      }
    });
    return set;
  };
  return assembleX509Identity(
    { chain, key, bundles },
    {
      certLabel: `--mtls-cert-file ${options.certFile}`,
      keyLabel: `--mtls-key-file ${options.keyFile}`,
      expectedTrustDomain,
      now,
    },
  );
}

export type { ReloadOutcome };

/** Every file of the identity, by the flag that names it: what an unchanged reload reports. */
function identityFiles(options: FileIdentityOptions): { flag: string; file: string }[] {
  return [
    { flag: '--mtls-cert-file', file: options.certFile },
    { flag: '--mtls-key-file', file: options.keyFile },
    { flag: '--mtls-ca-file', file: options.caFile },
    ...options.federatedBundles.map((b) => ({ flag: '--federated-bundle', file: b.file })),
  ];
}

export interface ReloadResult {
  outcome: ReloadOutcome;
  /** What asked for the reload: `watch`, `SIGHUP`, `interval`, ... */
  trigger: string;
  error?: SidecarError;
}

/**
 * File identity source with validate-then-swap reloads: a reload reads every file, validates them as one
 * identity and swaps only if all is good and something changed. A failed reload keeps the last good
 * identity, logs why and is counted; it never throws and never exits.
 */
export class FileIdentitySource implements IdentitySource {
  readonly kind = 'file';
  readonly reloads: Record<ReloadOutcome, number> = { updated: 0, unchanged: 0, failed: 0 };

  stats(): IdentitySourceStats {
    return { ...this.reloads };
  }
  private identity: X509Identity;
  private fingerprint: string;
  private queue: Promise<unknown> = Promise.resolve();
  private pending: Promise<ReloadResult> | undefined;
  private readonly expiry: ExpiryWatch;
  private readonly listeners = new Set<(identity: X509Identity) => void>();

  private constructor(
    readonly options: FileIdentityOptions,
    private readonly log: Logger,
    texts: FileIdentityTexts,
    identity: X509Identity,
  ) {
    this.identity = identity;
    this.fingerprint = fingerprintOf(texts);
    this.expiry = new ExpiryWatch(log);
    this.expiry.track(identity);
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
  status(): IdentityStatus {
    return this.expiry.expired || Date.now() > chainNotAfter(this.identity)
      ? { ready: false, reason: 'svid_expired' }
      : { ready: true };
  }

  onUpdate(listener: (identity: X509Identity) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Re-reads the files. Reloads run one at a time; while one runs, further requests merge into one
   * queued reload (a SIGHUP flood or a tight interval cannot pile up). Never rejects.
   */
  reload(trigger: string): Promise<ReloadResult> {
    if (this.pending) return this.pending;
    const next = this.queue.then(() => {
      this.pending = undefined;
      return this.reloadNow(trigger);
    });
    this.pending = next;
    this.queue = next.catch(() => undefined);
    return next;
  }

  async close(): Promise<void> {
    this.expiry.close();
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
        for (const { flag, file } of identityFiles(this.options)) logFileUnchanged(this.log, trigger, flag, file);
        return { outcome: 'unchanged', trigger };
      }
      identity = parseFileIdentity(this.options, texts, {
        expectedTrustDomain: this.identity.svid.id.trustDomain,
        onFederatedProblem: (trustDomain, error) =>
          this.log.warn(
            { event: 'federated_bundle_dropped', trigger, trust_domain: trustDomain, reason: error.code },
            `the bundle of "${trustDomain}" is not usable, so its peers are refused until it is: ${error.message}`,
          ),
      });
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
    this.expiry.track(identity);
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
    notifyAll(this.listeners, identity, this.log);
    return { outcome: 'updated', trigger };
  }
}
