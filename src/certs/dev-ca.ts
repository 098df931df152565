// A development certificate authority: creates a trust domain's CA and issues X509-SVIDs (ECDSA P-256)
// for the demo, the tests and file mode. Not a production CA: keys live in plain PEM files.
import { randomBytes, webcrypto } from 'node:crypto';
import { lstat, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CERTS_INIT_DEFAULTS, CERTS_ISSUE_DEFAULTS } from '../config/defaults.js';
import { parseDuration } from '../duration.js';
import { SidecarError } from '../errors.js';
import { parseSpiffeId, parseTrustDomain } from '../spiffe/id.js';
import { x509 } from '../spiffe/x509-library.js';

const EC_KEY: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const HOUR = 3_600_000;
/** The PEM label of an unencrypted PKCS#8 key (RFC 7468 §10). */
const PKCS8_LABEL = ['PRIVATE', 'KEY'].join(' ');
/** Backdate notBefore so a peer whose clock is a little behind still accepts a fresh certificate. */
const BACKDATE_MS = 60_000;

export interface Issuer {
  readonly certPem: string;
  readonly keys: CryptoKeyPair;
  /** PEM of this issuer and of the intermediates above it, excluding the root: what a leaf's chain carries. */
  readonly chainPem: string;
  readonly cert: x509.X509Certificate;
}

export interface CertificateAuthority extends Issuer {
  readonly trustDomain: string;
}

/** A certificate and its private key, as PEM. */
export interface IssuedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  /** Leaf followed by the issuing intermediates: what goes into `tls.crt`. */
  readonly chainPem: string;
  readonly keys: CryptoKeyPair;
  readonly cert: x509.X509Certificate;
  readonly serialNumber: string;
}

/** Everything a certificate may say; tests use the unusual values to build invalid SVIDs on purpose. */
export interface CertificateTemplate {
  subject?: string;
  uris?: string[];
  dnsNames?: string[];
  isCA?: boolean;
  pathLength?: number;
  /** Key usage bits (x509.KeyUsageFlags); undefined leaves the extension out. */
  keyUsage?: number;
  extKeyUsage?: string[];
  notBefore?: Date;
  notAfter?: Date;
  extensions?: x509.Extension[];
  /** The subject's key pair; a fresh ECDSA P-256 pair by default. */
  keys?: CryptoKeyPair;
}

/** A certificate serial from 16 random bytes, as hex; exported for its test. */
export function serialNumberFrom(bytes: Buffer): string {
  const serial = Buffer.from(bytes);
  // First byte 0x01-0x7f: a positive INTEGER whose DER encoding keeps all 16 bytes, so the serial we
  // report is the serial the certificate carries (a leading 0x00 would be stripped by DER).
  serial[0] = (serial[0] % 0x7f) + 1;
  return serial.toString('hex');
}

async function privateKeyPem(keys: CryptoKeyPair): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return `-----BEGIN ${PKCS8_LABEL}-----\n${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n?$/, '\n')}-----END ${PKCS8_LABEL}-----\n`;
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
}

function extensionsOf(t: CertificateTemplate): x509.Extension[] {
  const extensions: x509.Extension[] = [new x509.BasicConstraintsExtension(t.isCA ?? false, t.pathLength, true)];
  if (t.keyUsage !== undefined) extensions.push(new x509.KeyUsagesExtension(t.keyUsage, true));
  if (t.extKeyUsage) extensions.push(new x509.ExtendedKeyUsageExtension(t.extKeyUsage));
  const names = [
    ...(t.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(t.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  return [...extensions, ...(t.extensions ?? [])];
}

/** Issues a certificate from a template, signed by `issuer`, or self-signed when issuer is undefined. */
export async function issueCertificate(
  issuer: Issuer | undefined,
  template: CertificateTemplate,
): Promise<IssuedCertificate> {
  const keys = template.keys ?? (await generateKeys());
  const now = Date.now();
  const serialNumber = serialNumberFrom(randomBytes(16));
  const notBefore = template.notBefore ?? new Date(now - BACKDATE_MS);
  const notAfter = template.notAfter ?? new Date(now + HOUR);
  const extensions = [...extensionsOf(template), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)];
  if (issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey));
  const subject = template.subject ?? 'O=spiffe-sidecar dev';
  const cert = issuer
    ? await x509.X509CertificateGenerator.create({
        serialNumber,
        subject,
        issuer: issuer.cert.subject,
        notBefore,
        notAfter,
        signingAlgorithm: SIGNING,
        publicKey: keys.publicKey,
        signingKey: issuer.keys.privateKey,
        extensions,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber,
        name: subject,
        notBefore,
        notAfter,
        signingAlgorithm: SIGNING,
        keys,
        extensions,
      });
  const certPem = cert.toString('pem').trim().concat('\n');
  return {
    certPem,
    keyPem: await privateKeyPem(keys),
    chainPem: certPem + (issuer?.chainPem ?? ''),
    keys,
    cert,
    serialNumber,
  };
}

export interface CreateDevCaOptions {
  /** Trust domain name or `spiffe://` ID. */
  trustDomain: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Extra extensions for the CA certificate, e.g. name constraints in tests. */
  extensions?: x509.Extension[];
}

/** Creates a self-signed root CA for a trust domain (URI SAN `spiffe://<td>`, X509-SVID §3.2). */
export async function createDevCa(options: CreateDevCaOptions): Promise<CertificateAuthority> {
  const trustDomain = parseTrustDomain(options.trustDomain);
  const issued = await issueCertificate(undefined, {
    subject: `O=spiffe-sidecar dev, CN=${trustDomain} dev CA`,
    uris: [`spiffe://${trustDomain}`],
    isCA: true,
    keyUsage: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    notBefore: options.notBefore,
    notAfter: options.notAfter ?? new Date(Date.now() + DEFAULT_CA_LIFETIME_MS),
    extensions: options.extensions,
  });
  return { trustDomain, certPem: issued.certPem, keys: issued.keys, cert: issued.cert, chainPem: '' };
}

/** Issues an intermediate CA under `issuer`; a leaf it signs carries it in its chain. */
export async function issueIntermediateCa(issuer: Issuer, template: CertificateTemplate = {}): Promise<Issuer> {
  const issued = await issueCertificate(issuer, {
    subject: 'O=spiffe-sidecar dev, CN=intermediate CA',
    isCA: true,
    keyUsage: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    ...template,
  });
  return { certPem: issued.certPem, keys: issued.keys, cert: issued.cert, chainPem: issued.certPem + issuer.chainPem };
}

export interface IssueSvidOptions {
  /** The SVID's SPIFFE ID; must have a path. */
  id: string;
  /** Lifetime in milliseconds (default DEFAULT_SVID_LIFETIME_MS). */
  lifetimeMs?: number;
  /** Overrides for tests that need an invalid SVID. */
  template?: CertificateTemplate;
}

/** The lifetimes `certs init` and `certs issue` give without --lifetime: the defaults table's. */
export const DEFAULT_CA_LIFETIME_MS = parseDuration(CERTS_INIT_DEFAULTS.lifetime.value, '--lifetime');
export const DEFAULT_SVID_LIFETIME_MS = parseDuration(CERTS_ISSUE_DEFAULTS.lifetime.value, '--lifetime');

/** Issues an X509-SVID: ECDSA P-256, one URI SAN, not a CA, digitalSignature, serverAuth + clientAuth. */
export async function issueSvid(issuer: Issuer, options: IssueSvidOptions): Promise<IssuedCertificate> {
  const id = parseSpiffeId(options.id);
  if (id.path === '') {
    throw new SidecarError('ERR_INVALID_SPIFFE_ID', `--id ${id}: an SVID needs a path, e.g. ${id}/my-service`);
  }
  const lifetime = options.lifetimeMs ?? DEFAULT_SVID_LIFETIME_MS;
  return issueCertificate(issuer, {
    uris: [id.toString()],
    keyUsage: x509.KeyUsageFlags.digitalSignature,
    extKeyUsage: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
    notAfter: new Date(Date.now() + lifetime),
    ...options.template,
  });
}

/** Files of a dev CA directory. */
export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';

/** How files are written: `overwrite: false` refuses (ERR_FILE_EXISTS) if any of them exists. */
export interface SaveOptions {
  /** Replace files that exist (the default, for the demo and tests); the CLI passes its --force. */
  overwrite?: boolean;
  /** The flag that named the directory, for messages (default `--out`). */
  flag?: string;
  /** Why replacing matters, added to the ERR_FILE_EXISTS message. */
  whyKeep?: string;
}

interface OutFile {
  readonly name: string;
  readonly data: string;
  readonly mode: number;
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const words: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'not permitted',
    EROFS: 'a read-only file system',
    ENOSPC: 'no space left',
    ENOTDIR: 'a part of the path is a file, not a directory',
    EISDIR: 'a directory is in the way',
  };
  return (e.code && words[e.code]) ?? e.message;
}

/**
 * Writes `files` into `dir` (made if missing) all or nothing. Without `overwrite`, a file that exists is
 * refused before anything is written, and each file is created exclusively (one that appears meanwhile is
 * refused too, and the files written so far are removed). With it, each file is written beside its place
 * and renamed over it: a reader (a sidecar watching the directory) never sees half a file, and a key file
 * gets its mode even when it replaces a file that had another.
 */
async function writeAll(dir: string, files: readonly OutFile[], options: SaveOptions): Promise<string[]> {
  const flag = options.flag ?? '--out';
  const overwrite = options.overwrite ?? true;
  const paths = files.map((f) => join(dir, f.name));
  const failed = (what: string, err: unknown): never => {
    throw new SidecarError('ERR_FILE_WRITE', `${flag} ${dir}: cannot write ${what} (${errnoText(err)})`, {
      cause: err,
    });
  };
  const exists = (path: string): never => {
    throw new SidecarError(
      'ERR_FILE_EXISTS',
      `${flag} ${dir}: ${path} already exists${options.whyKeep ? ` (${options.whyKeep})` : ''}; nothing was written; add --force to replace it`,
    );
  };
  const stats = await stat(dir).catch((err: NodeJS.ErrnoException) =>
    err.code === 'ENOENT' ? undefined : failed('there', err),
  );
  if (stats && !stats.isDirectory())
    throw new SidecarError(
      'ERR_FILE_WRITE',
      `${flag} ${dir}: a file, not a directory; give a directory (it is made if missing)`,
    );
  if (!stats)
    await mkdir(dir, { recursive: true }).catch((err: unknown) => failed('there: cannot make the directory', err));
  if (!overwrite) {
    for (const path of paths) {
      const found = await lstat(path).then(
        () => true,
        (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? false : failed(path, err)),
      );
      if (found) exists(path);
    }
    const written: string[] = [];
    try {
      for (const [i, f] of files.entries()) {
        await writeFile(paths[i], f.data, { mode: f.mode, flag: 'wx' });
        written.push(paths[i]);
      }
    } catch (err) {
      await Promise.all(written.map((p) => rm(p, { force: true })));
      const path = paths[written.length];
      return (err as NodeJS.ErrnoException).code === 'EEXIST' ? exists(path) : failed(path, err);
    }
    return paths.map((p) => resolve(p));
  }
  const suffix = `.${randomBytes(6).toString('hex')}.tmp`;
  const temps = paths.map((p) => `${p}${suffix}`);
  try {
    for (const [i, f] of files.entries()) await writeFile(temps[i], f.data, { mode: f.mode, flag: 'wx' });
    for (const [i, path] of paths.entries()) await rename(temps[i], path);
  } catch (err) {
    await Promise.all(temps.map((t) => rm(t, { force: true })));
    return failed(paths.join(', '), err);
  }
  return paths.map((p) => resolve(p));
}

/** Writes ca.crt and ca.key into `dir`; resolves with their absolute paths. */
export async function saveDevCa(ca: CertificateAuthority, dir: string, options: SaveOptions = {}): Promise<string[]> {
  return writeAll(
    dir,
    [
      { name: CA_CERT_FILE, data: ca.certPem, mode: 0o644 },
      { name: CA_KEY_FILE, data: await privateKeyPem(ca.keys), mode: 0o600 },
    ],
    options,
  );
}

/** The `--ca` directory: a readable ca.crt and ca.key made by `certs init`, else one line saying why not. */
async function readCaFiles(dir: string): Promise<[certPem: string, keyPem: string]> {
  const make = `make one with 'spiffe-sidecar certs init --trust-domain example.org --out ${dir}'`;
  const stats = await stat(dir).catch((err: NodeJS.ErrnoException) => err);
  if (stats instanceof Error) {
    const why = stats.code === 'ENOENT' ? `no such directory; ${make}` : `cannot read it (${errnoText(stats)})`;
    throw new SidecarError('ERR_FILE_READ', `--ca ${dir}: ${why}`, { cause: stats });
  }
  if (!stats.isDirectory())
    throw new SidecarError(
      'ERR_FILE_READ',
      `--ca ${dir}: a file; give the directory 'certs init' made, which holds ${CA_CERT_FILE} and ${CA_KEY_FILE}`,
    );
  const read = (name: string) =>
    readFile(join(dir, name), 'utf8').catch((err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ENOENT' ? `there is no ${name} in it; ${make}` : `cannot read ${name} (${errnoText(err)})`;
      throw new SidecarError('ERR_FILE_READ', `--ca ${dir}: ${why}`, { cause: err });
    });
  return [await read(CA_CERT_FILE), await read(CA_KEY_FILE)];
}

/** Loads the CA of a `certs init` directory; every problem is one SidecarError naming `--ca` and the file. */
export async function loadDevCa(dir: string): Promise<CertificateAuthority> {
  const [certPem, keyPem] = await readCaFiles(dir);
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (err) {
    throw new SidecarError('ERR_CERT_PARSE', `--ca ${dir}: ${CA_CERT_FILE} is not a PEM certificate`, { cause: err });
  }
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uri = san?.names.items.find((n) => n.type === 'url')?.value;
  if (!uri)
    throw new SidecarError(
      'ERR_CERT_PARSE',
      `--ca ${dir}: ${CA_CERT_FILE} names no trust domain (no spiffe:// URI SAN)`,
    );
  if (!cert.getExtension(x509.BasicConstraintsExtension)?.ca)
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `--ca ${dir}: ${CA_CERT_FILE} is not a CA certificate (an SVID?); give the directory 'certs init' made`,
    );
  if (cert.notAfter.getTime() <= Date.now())
    throw new SidecarError(
      'ERR_CERT_EXPIRED',
      `--ca ${dir}: the CA expired at ${cert.notAfter.toISOString()}; make a new one with 'certs init --force' (and issue every SVID again)`,
    );
  const body = keyPem.replace(new RegExp(`-----(BEGIN|END) ${PKCS8_LABEL}-----|\\s+`, 'g'), '');
  let privateKey: CryptoKey;
  try {
    privateKey = await webcrypto.subtle.importKey('pkcs8', Buffer.from(body, 'base64'), EC_KEY, true, ['sign']);
  } catch (err) {
    throw new SidecarError(
      'ERR_KEY_PARSE',
      `--ca ${dir}: ${CA_KEY_FILE} is not the P-256 key (PKCS#8 PEM) 'certs init' writes`,
      { cause: err },
    );
  }
  const publicKey = await cert.publicKey
    .export(EC_KEY, ['verify'], webcrypto as unknown as Crypto)
    .catch((err: unknown) => {
      throw new SidecarError('ERR_CERT_PARSE', `--ca ${dir}: ${CA_CERT_FILE} does not hold a P-256 key`, {
        cause: err,
      });
    });
  const [own, certified] = await Promise.all([
    webcrypto.subtle.exportKey('jwk', privateKey),
    webcrypto.subtle.exportKey('jwk', publicKey),
  ]);
  if (own.x !== certified.x || own.y !== certified.y)
    throw new SidecarError('ERR_KEY_MISMATCH', `--ca ${dir}: ${CA_KEY_FILE} is not the key of ${CA_CERT_FILE}`);
  return { trustDomain: parseTrustDomain(uri), certPem, keys: { privateKey, publicKey }, cert, chainPem: '' };
}

/**
 * Writes an SVID as a Kubernetes TLS Secret would hold it: tls.crt (chain), tls.key, ca.crt (bundle);
 * resolves with their absolute paths.
 */
export async function saveSvid(
  svid: IssuedCertificate,
  bundlePem: string,
  dir: string,
  options: SaveOptions = {},
): Promise<string[]> {
  return writeAll(
    dir,
    [
      { name: 'tls.crt', data: svid.chainPem, mode: 0o644 },
      { name: 'tls.key', data: svid.keyPem, mode: 0o600 },
      { name: 'ca.crt', data: bundlePem, mode: 0o644 },
    ],
    options,
  );
}
