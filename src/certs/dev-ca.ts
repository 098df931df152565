// A development certificate authority: creates a trust domain's CA and issues X509-SVIDs (ECDSA P-256)
// for the demo, the tests and file mode. Not a production CA: keys live in plain PEM files.
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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
    notAfter: options.notAfter ?? new Date(Date.now() + 365 * 24 * HOUR),
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
  /** Lifetime in milliseconds (default one hour). */
  lifetimeMs?: number;
  /** Overrides for tests that need an invalid SVID. */
  template?: CertificateTemplate;
}

export const DEFAULT_SVID_LIFETIME_MS = HOUR;

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

export async function saveDevCa(ca: CertificateAuthority, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, CA_CERT_FILE), ca.certPem);
  await writeFile(join(dir, CA_KEY_FILE), await privateKeyPem(ca.keys), { mode: 0o600 });
}

export async function loadDevCa(dir: string): Promise<CertificateAuthority> {
  let certPem: string;
  let keyPem: string;
  try {
    [certPem, keyPem] = await Promise.all([
      readFile(join(dir, CA_CERT_FILE), 'utf8'),
      readFile(join(dir, CA_KEY_FILE), 'utf8'),
    ]);
  } catch (err) {
    throw new SidecarError(
      'ERR_FILE_READ',
      `--ca ${dir}: cannot read ${CA_CERT_FILE} and ${CA_KEY_FILE} (${(err as Error).message}); create the CA with 'spiffe-sidecar certs init'`,
      { cause: err },
    );
  }
  const cert = new x509.X509Certificate(certPem);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uri = san?.names.items.find((n) => n.type === 'url')?.value;
  if (!uri)
    throw new SidecarError(
      'ERR_CERT_PARSE',
      `--ca ${dir}: ${CA_CERT_FILE} names no trust domain (no spiffe:// URI SAN)`,
    );
  const body = keyPem.replace(new RegExp(`-----(BEGIN|END) ${PKCS8_LABEL}-----|\\s+`, 'g'), '');
  const privateKey = await webcrypto.subtle.importKey('pkcs8', Buffer.from(body, 'base64'), EC_KEY, true, ['sign']);
  const publicKey = await cert.publicKey.export(EC_KEY, ['verify'], webcrypto as unknown as Crypto);
  return { trustDomain: parseTrustDomain(uri), certPem, keys: { privateKey, publicKey }, cert, chainPem: '' };
}

/** Writes an SVID as a Kubernetes TLS Secret would hold it: tls.crt (chain), tls.key, ca.crt (bundle). */
export async function saveSvid(svid: IssuedCertificate, bundlePem: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'tls.crt'), svid.chainPem);
  await writeFile(join(dir, 'tls.key'), svid.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'ca.crt'), bundlePem);
}
