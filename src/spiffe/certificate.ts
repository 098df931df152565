// One parsed X.509 certificate: the DER, Node's X509Certificate (signature checks run in OpenSSL) and the
// extension facts the SPIFFE rules need, decoded from the ASN.1 with @peculiar/asn1-x509 (never from Node's
// display strings; the high-level @peculiar/x509 object decodes everything twice and costs 4x as much).
// Malformed input throws ERR_CERT_PARSE.
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  Certificate as AsnCertificate,
  KeyUsage as AsnKeyUsage,
  BasicConstraints,
  ExtendedKeyUsage,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_ce_subjectAltName,
  NameConstraints,
  SubjectAlternativeName,
} from '@peculiar/asn1-x509';
import { SidecarError } from '../errors.js';

/** Key usage bits we reason about (RFC 5280 §4.2.1.3, in @peculiar's bit order). */
export const KeyUsage = {
  digitalSignature: 1,
  keyCertSign: 32,
  cRLSign: 64,
} as const;

export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const EKU_ANY = '2.5.29.37.0';

/** Extensions this verifier understands; any other extension marked critical fails the path. */
const HANDLED_EXTENSIONS = new Set([
  id_ce_basicConstraints,
  id_ce_keyUsage,
  id_ce_extKeyUsage,
  id_ce_subjectAltName,
  id_ce_nameConstraints,
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.32', // certificatePolicies: we require no particular policy (RFC 5280 any-policy)
]);

export interface NameSubtrees {
  uris: string[];
  dnsNames: string[];
  /** Constraint types we do not evaluate (IP, email, directoryName...): their presence fails closed. */
  unsupported: string[];
}

export interface Certificate {
  readonly der: Buffer;
  /** OpenSSL-backed view: signature verification, issuer checks, public key. */
  readonly node: NodeX509Certificate;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly serialNumber: string;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly isCA: boolean;
  readonly pathLength: number | undefined;
  /** Key usage bits, or undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  readonly keyUsageCritical: boolean;
  /** Extended key usage OIDs, or undefined when the extension is absent. */
  readonly extKeyUsage: readonly string[] | undefined;
  readonly nameConstraints: { permitted: NameSubtrees; excluded: NameSubtrees } | undefined;
  /** Critical extensions we do not understand, and extensions that appear twice (RFC 5280 §4.2). */
  readonly extensionProblems: readonly string[];
}

function subtrees(list: NameConstraints['permittedSubtrees']): NameSubtrees {
  const out: NameSubtrees = { uris: [], dnsNames: [], unsupported: [] };
  for (const subtree of list ?? []) {
    const base = subtree.base;
    if (base.uniformResourceIdentifier !== undefined) out.uris.push(base.uniformResourceIdentifier);
    else if (base.dNSName !== undefined) out.dnsNames.push(base.dNSName);
    else out.unsupported.push(Object.keys(base).find((k) => (base as Record<string, unknown>)[k] !== undefined) ?? '?');
  }
  return out;
}

/**
 * A serial number as OpenSSL, Node and TLS clients print it (lower case): the INTEGER's bytes without the 0x00 that
 * DER puts before a value whose top bit is set (X.690 §8.3.2). Half of SPIRE's 128-bit random serials have it.
 */
function serialHex(bytes: ArrayBuffer): string {
  return Buffer.from(bytes)
    .toString('hex')
    .replace(/^(00)+(?=[0-9a-f]{2})/, '');
}

/**
 * Parses one DER certificate. `source` names where it came from, for the error message. `node` is the
 * same certificate already parsed by OpenSSL (a TLS socket hands one over), to skip parsing it twice.
 */
export function parseCertificate(der: Buffer, source: string, node?: NodeX509Certificate): Certificate {
  let asn: AsnCertificate;
  try {
    node ??= new NodeX509Certificate(der);
    asn = AsnConvert.parse(der, AsnCertificate);
  } catch (err) {
    throw new SidecarError('ERR_CERT_PARSE', `${source}: not a valid X.509 certificate (${(err as Error).message})`, {
      cause: err,
    });
  }
  const tbs = asn.tbsCertificate;
  const uris: string[] = [];
  const dnsNames: string[] = [];
  let isCA = false;
  let pathLength: number | undefined;
  let keyUsage: number | undefined;
  let keyUsageCritical = false;
  let extKeyUsage: string[] | undefined;
  let nameConstraints: Certificate['nameConstraints'];
  const problems: string[] = [];
  const seen = new Set<string>();
  try {
    for (const ext of tbs.extensions ?? []) {
      const id = ext.extnID;
      if (seen.has(id)) problems.push(`extension ${id} appears more than once`);
      seen.add(id);
      if (ext.critical && !HANDLED_EXTENSIONS.has(id)) problems.push(`unhandled critical extension ${id}`);
      const value = ext.extnValue.buffer;
      switch (id) {
        case id_ce_basicConstraints: {
          const bc = AsnConvert.parse(value, BasicConstraints);
          isCA = bc.cA;
          pathLength = bc.pathLenConstraint;
          break;
        }
        case id_ce_keyUsage:
          keyUsage = AsnConvert.parse(value, AsnKeyUsage).toNumber();
          keyUsageCritical = ext.critical;
          break;
        case id_ce_extKeyUsage:
          extKeyUsage = AsnConvert.parse(value, ExtendedKeyUsage).map(String);
          break;
        case id_ce_subjectAltName:
          for (const name of AsnConvert.parse(value, SubjectAlternativeName)) {
            if (name.uniformResourceIdentifier !== undefined) uris.push(name.uniformResourceIdentifier);
            else if (name.dNSName !== undefined) dnsNames.push(name.dNSName);
          }
          break;
        case id_ce_nameConstraints: {
          const nc = AsnConvert.parse(value, NameConstraints);
          nameConstraints = { permitted: subtrees(nc.permittedSubtrees), excluded: subtrees(nc.excludedSubtrees) };
          break;
        }
      }
    }
  } catch (err) {
    throw new SidecarError('ERR_CERT_PARSE', `${source}: malformed certificate extension (${(err as Error).message})`, {
      cause: err,
    });
  }
  return {
    der,
    node,
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    serialNumber: serialHex(tbs.serialNumber),
    uris,
    dnsNames,
    isCA,
    pathLength,
    keyUsage,
    keyUsageCritical,
    extKeyUsage,
    nameConstraints,
    extensionProblems: problems,
  };
}

/**
 * Splits concatenated DER certificates (how the Workload API sends chains and bundles) by reading each
 * outer SEQUENCE header. Throws ERR_CERT_PARSE on anything that is not a sequence of whole SEQUENCEs.
 */
export function splitDerCertificates(der: Uint8Array, source: string): Buffer[] {
  const bytes = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const out: Buffer[] = [];
  let offset = 0;
  const bad = (why: string): never => {
    throw new SidecarError('ERR_CERT_PARSE', `${source}: not concatenated DER certificates (${why} at byte ${offset})`);
  };
  while (offset < bytes.length) {
    if (bytes[offset] !== 0x30) bad('expected a SEQUENCE');
    const first = bytes[offset + 1];
    if (first === undefined) bad('truncated header');
    let length = first;
    let header = 2;
    if (first & 0x80) {
      const count = first & 0x7f;
      if (count === 0 || count > 4) bad('unsupported length encoding');
      if (offset + 2 + count > bytes.length) bad('truncated header');
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + bytes[offset + 2 + i];
      header = 2 + count;
    }
    const end = offset + header + length;
    if (end > bytes.length) bad('truncated certificate');
    out.push(bytes.subarray(offset, end));
    offset = end;
  }
  if (out.length === 0) bad('no certificate');
  return out;
}

/** Parses concatenated DER certificates, in order. */
export function parseDerCertificates(der: Uint8Array, source: string): Certificate[] {
  return splitDerCertificates(der, source).map((d, i) => parseCertificate(d, `${source} (certificate ${i + 1})`));
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)-----END \1-----/g;

/** Splits PEM text into the DER bodies of its CERTIFICATE blocks; other block types are ignored. */
export function pemCertificatesToDer(pem: string, source: string): Buffer[] {
  const ders: Buffer[] = [];
  for (const match of pem.matchAll(PEM_BLOCK)) {
    if (match[1] === 'CERTIFICATE') ders.push(Buffer.from(match[2].replace(/\s+/g, ''), 'base64'));
  }
  if (ders.length === 0) {
    throw new SidecarError('ERR_CERT_PARSE', `${source}: no PEM "CERTIFICATE" block found (is it the right file?)`);
  }
  return ders;
}

/** Parses every certificate of a PEM text, in order. */
export function parsePemCertificates(pem: string, source: string): Certificate[] {
  return pemCertificatesToDer(pem, source).map((der, i) => parseCertificate(der, `${source} (certificate ${i + 1})`));
}
