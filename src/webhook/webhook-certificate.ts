// The webhook's own serving certificate (from cert-manager or the chart's Job, mounted from a Secret):
// read as a pair, checked (a certificate, unexpired, the key matches, OpenSSL accepts both), and
// reloaded when the Secret volume changes. At startup a problem is a SidecarError; on reload it is
// logged and the last good pair stays in use.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { SidecarError } from '../errors.js';
import { readFlagFile } from '../flag-file.js';
import { type FileWatcher, watchIdentityFiles } from '../file-watcher.js';
import type { Logger } from '../log.js';

export interface CertificatePair {
  readonly certPem: string;
  readonly keyPem: string;
  readonly serial: string;
  readonly notAfter: Date;
  readonly dnsNames: readonly string[];
  /** SHA-256 of both files: a reload that reads the same bytes changes nothing. */
  readonly fingerprint: string;
}

/** Reads and checks the pair; throws SidecarError naming the flag and the file. */
export async function readCertificatePair(
  certFile: string,
  keyFile: string,
  now = new Date(),
): Promise<CertificatePair> {
  const [certPem, keyPem] = await Promise.all([
    readFlagFile('--tls-cert-file', certFile),
    readFlagFile('--tls-key-file', keyFile),
  ]);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new SidecarError('ERR_WEBHOOK_CERT', `--tls-cert-file ${certFile}: not a PEM certificate`, { cause: err });
  }
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (now < notBefore || now > notAfter) {
    throw new SidecarError(
      'ERR_WEBHOOK_CERT',
      `--tls-cert-file ${certFile}: valid from ${notBefore.toISOString()} to ${notAfter.toISOString()}, not now; renew it`,
    );
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new SidecarError('ERR_KEY_PARSE', `--tls-key-file ${keyFile}: not a PEM private key`, { cause: err });
  }
  if (!cert.checkPrivateKey(key)) {
    throw new SidecarError('ERR_KEY_MISMATCH', `--tls-key-file ${keyFile}: not the key of --tls-cert-file ${certFile}`);
  }
  try {
    createSecureContext({ cert: certPem, key: keyPem });
  } catch (err) {
    throw new SidecarError(
      'ERR_WEBHOOK_CERT',
      `--tls-cert-file ${certFile}: OpenSSL refuses the pair (${(err as Error).message})`,
      {
        cause: err,
      },
    );
  }
  const dnsNames = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((n) => n.startsWith('DNS:'))
    .map((n) => n.slice(4));
  const fingerprint = createHash('sha256').update(certPem).update('\0').update(keyPem).digest('hex');
  return Object.freeze({ certPem, keyPem, serial: cert.serialNumber, notAfter, dnsNames, fingerprint });
}

/** The current pair, and a watch on its directory that swaps in a new valid pair. */
export class WebhookCertificate {
  private watcher: FileWatcher | undefined;
  private reloading: Promise<void> | undefined;
  private again = false;

  private constructor(
    private pair: CertificatePair,
    private readonly certFile: string,
    private readonly keyFile: string,
    private readonly log: Logger,
    private readonly onChange: (pair: CertificatePair) => void,
  ) {}

  static async load(
    certFile: string,
    keyFile: string,
    log: Logger,
    onChange: (pair: CertificatePair) => void,
  ): Promise<WebhookCertificate> {
    const source = new WebhookCertificate(
      await readCertificatePair(certFile, keyFile),
      certFile,
      keyFile,
      log,
      onChange,
    );
    source.logLoaded('startup');
    source.watcher = await watchIdentityFiles([certFile, keyFile], () => void source.reload(), log);
    return source;
  }

  current(): CertificatePair {
    return this.pair;
  }

  /** Re-reads the files; concurrent calls coalesce into one more read after the running one. */
  reload(): Promise<void> {
    if (this.reloading) {
      this.again = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.again = false;
        await this.reloadOnce();
      } while (this.again);
      this.reloading = undefined;
    })();
    return this.reloading;
  }

  async close(): Promise<void> {
    await this.watcher?.close();
    await this.reloading;
  }

  private async reloadOnce(): Promise<void> {
    try {
      const pair = await readCertificatePair(this.certFile, this.keyFile);
      if (pair.fingerprint === this.pair.fingerprint) return;
      this.onChange(pair);
      this.pair = pair;
      this.logLoaded('watch');
    } catch (err) {
      this.log.warn(
        {
          event: 'webhook_cert_reload_failed',
          reason: (err as SidecarError).code ?? 'ERR_WEBHOOK_CERT',
          error: (err as Error).message,
          serial: this.pair.serial,
        },
        'webhook certificate reload failed; the last good one stays in use',
      );
    }
  }

  private logLoaded(trigger: string): void {
    this.log.info(
      {
        event: 'webhook_cert_loaded',
        trigger,
        serial: this.pair.serial,
        not_after: this.pair.notAfter.toISOString(),
        dns_names: this.pair.dnsNames,
      },
      'webhook certificate loaded',
    );
  }
}
