// One parsed X.509 certificate: the DER, Node's X509Certificate (signature checks run in OpenSSL) and the
// extension facts the SPIFFE rules need, read from the DER by our own strict reader (der.ts), never from Node's
// display strings. Not @peculiar/asn1-x509 any more (it stays the tests' reference): loading it and its first
// parse cost every start 25-35 ms, and each certificate ~0.8 ms of CPU against ~20 µs here (issue 17).
// Malformed input throws ERR_CERT_PARSE.
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { SidecarError } from '../errors.js';
import { DerReader, Tag, type Tlv } from './der.js';

/** Key usage bits we reason about (RFC 5280 §4.2.1.3): bit n of the BIT STRING is 2^n. */
export const KeyUsage = {
  digitalSignature: 1,
  keyCertSign: 32,
  cRLSign: 64,
} as const;

export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const EKU_ANY = '2.5.29.37.0';

const ID_CE_BASIC_CONSTRAINTS = '2.5.29.19';
const ID_CE_KEY_USAGE = '2.5.29.15';
const ID_CE_EXT_KEY_USAGE = '2.5.29.37';
const ID_CE_SUBJECT_ALT_NAME = '2.5.29.17';
const ID_CE_NAME_CONSTRAINTS = '2.5.29.30';

/** Extensions this verifier understands; any other extension marked critical fails the path. */
const HANDLED_EXTENSIONS = new Set([
  ID_CE_BASIC_CONSTRAINTS,
  ID_CE_KEY_USAGE,
  ID_CE_EXT_KEY_USAGE,
  ID_CE_SUBJECT_ALT_NAME,
  ID_CE_NAME_CONSTRAINTS,
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.32', // certificatePolicies: we require no particular policy (RFC 5280 any-policy)
]);

/** GeneralName's choices by their tag (RFC 5280 §4.2.1.6), named as in RFC 5280's ASN.1. */
const GENERAL_NAME = new Map<number, string>([
  [0xa0, 'otherName'],
  [0x81, 'rfc822Name'],
  [0x82, 'dNSName'],
  [0xa3, 'x400Address'],
  [0xa4, 'directoryName'],
  [0xa5, 'ediPartyName'],
  [0x86, 'uniformResourceIdentifier'],
  [0x87, 'iPAddress'],
  [0x88, 'registeredID'],
]);
const DNS_NAME = 0x82;
const URI = 0x86;

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

/**
 * A serial number as OpenSSL, Node and TLS clients print it (lower case): the INTEGER's bytes without the 0x00 that
 * DER puts before a value whose top bit is set (X.690 §8.3.2). Half of SPIRE's 128-bit random serials have it.
 */
function serialHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .toString('hex')
    .replace(/^(00)+(?=[0-9a-f]{2})/, '');
}

/** The fields of a Certificate (RFC 5280 §4.1) we read; the rest is checked for shape and skipped. */
interface Tbs {
  serial: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  extensions: { id: string; critical: boolean; value: Tlv }[];
}

function readCertificate(reader: DerReader): Tbs {
  const cert = reader.enter(Tag.SEQUENCE, 'Certificate');
  reader.finish('the certificate');
  const tbs = cert.enter(Tag.SEQUENCE, 'tbsCertificate');
  cert.expect(Tag.SEQUENCE, 'signatureAlgorithm');
  cert.expect(Tag.BIT_STRING, 'signatureValue');
  cert.finish('signatureValue');
  const version = tbs.optional(0xa0);
  if (version !== undefined) {
    const v = tbs.inside(version);
    if (v.smallUnsigned(v.expect(Tag.INTEGER, 'version'), 'version') > 2) throw new Error('unknown version');
    v.finish('version');
  }
  const serialTlv = tbs.expect(Tag.INTEGER, 'serialNumber');
  if (serialTlv.end === serialTlv.start) throw new Error('empty serialNumber');
  tbs.expect(Tag.SEQUENCE, 'signature');
  tbs.expect(Tag.SEQUENCE, 'issuer');
  const validity = tbs.enter(Tag.SEQUENCE, 'validity');
  const notBefore = validity.time(validity.next(), 'notBefore');
  const notAfter = validity.time(validity.next(), 'notAfter');
  validity.finish('validity');
  tbs.expect(Tag.SEQUENCE, 'subject');
  tbs.expect(Tag.SEQUENCE, 'subjectPublicKeyInfo');
  tbs.optional(0x81); // issuerUniqueID
  tbs.optional(0x82); // subjectUniqueID
  const extensionsTlv = tbs.optional(0xa3);
  tbs.finish('tbsCertificate');
  const extensions: Tbs['extensions'] = [];
  if (extensionsTlv !== undefined) {
    const outer = tbs.inside(extensionsTlv);
    const list = outer.enter(Tag.SEQUENCE, 'extensions');
    outer.finish('extensions');
    while (!list.done) {
      const ext = list.enter(Tag.SEQUENCE, 'extension');
      const id = ext.oid(ext.expect(Tag.OID, 'extnID'), 'extnID');
      const criticalTlv = ext.optional(Tag.BOOLEAN);
      const critical = criticalTlv !== undefined && ext.boolean(criticalTlv, `extension ${id} critical`);
      const value = ext.expect(Tag.OCTET_STRING, `extension ${id} extnValue`);
      ext.finish(`extension ${id}`);
      extensions.push({ id, critical, value });
    }
  }
  return { serial: reader.bytesOf(serialTlv), notBefore, notAfter, extensions };
}

/** The one value an extension's OCTET STRING holds, as a reader over its contents. */
function extensionValue(reader: DerReader, value: Tlv, tag: number, what: string): DerReader {
  const whole = reader.inside(value);
  const inner = whole.enter(tag, what);
  whole.finish(what);
  return inner;
}

/** GeneralNames (a SAN, a name constraint's base): the URIs and DNS names; every other choice by its name. */
function generalName(reader: DerReader, into: NameSubtrees, what: string): void {
  const name = reader.next();
  const kind = GENERAL_NAME.get(name.tag);
  if (kind === undefined) throw new Error(`${what}: not a GeneralName (tag 0x${name.tag.toString(16)})`);
  if (name.tag === URI) into.uris.push(reader.ia5(name, what));
  else if (name.tag === DNS_NAME) into.dnsNames.push(reader.ia5(name, what));
  else into.unsupported.push(kind);
}

/** GeneralSubtrees (RFC 5280 §4.2.1.10): each a base name, its minimum and maximum (which we do not use). */
function subtrees(reader: DerReader, tlv: Tlv | undefined, what: string): NameSubtrees {
  const out: NameSubtrees = { uris: [], dnsNames: [], unsupported: [] };
  if (tlv === undefined) return out;
  const list = reader.inside(tlv);
  while (!list.done) {
    const subtree = list.enter(Tag.SEQUENCE, what);
    generalName(subtree, out, what);
    const minimum = subtree.optional(0x80);
    if (minimum !== undefined) subtree.smallUnsigned(minimum, `${what} minimum`);
    const maximum = subtree.optional(0x81);
    if (maximum !== undefined) subtree.smallUnsigned(maximum, `${what} maximum`);
    subtree.finish(what);
  }
  return out;
}

/**
 * Parses one DER certificate. `source` names where it came from, for the error message. `node` is the
 * same certificate already parsed by OpenSSL (a TLS socket hands one over), to skip parsing it twice.
 */
export function parseCertificate(der: Buffer, source: string, node?: NodeX509Certificate): Certificate {
  const reader = new DerReader(der);
  let tbs: Tbs;
  try {
    node ??= new NodeX509Certificate(der);
    tbs = readCertificate(reader);
  } catch (err) {
    throw new SidecarError('ERR_CERT_PARSE', `${source}: not a valid X.509 certificate (${(err as Error).message})`, {
      cause: err,
    });
  }
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
    for (const { id, critical, value } of tbs.extensions) {
      if (seen.has(id)) problems.push(`extension ${id} appears more than once`);
      seen.add(id);
      if (critical && !HANDLED_EXTENSIONS.has(id)) problems.push(`unhandled critical extension ${id}`);
      switch (id) {
        case ID_CE_BASIC_CONSTRAINTS: {
          const bc = extensionValue(reader, value, Tag.SEQUENCE, 'basicConstraints');
          const cA = bc.optional(Tag.BOOLEAN);
          isCA = cA !== undefined && bc.boolean(cA, 'basicConstraints cA');
          const pathLen = bc.optional(Tag.INTEGER);
          pathLength = pathLen === undefined ? undefined : bc.smallUnsigned(pathLen, 'pathLenConstraint');
          bc.finish('basicConstraints');
          break;
        }
        case ID_CE_KEY_USAGE: {
          const whole = reader.inside(value);
          keyUsage = whole.namedBits(whole.expect(Tag.BIT_STRING, 'keyUsage'), 'keyUsage', 2);
          whole.finish('keyUsage');
          keyUsageCritical = critical;
          break;
        }
        case ID_CE_EXT_KEY_USAGE: {
          const list = extensionValue(reader, value, Tag.SEQUENCE, 'extKeyUsage');
          extKeyUsage = [];
          while (!list.done) extKeyUsage.push(list.oid(list.expect(Tag.OID, 'extKeyUsage'), 'extKeyUsage'));
          break;
        }
        case ID_CE_SUBJECT_ALT_NAME: {
          const list = extensionValue(reader, value, Tag.SEQUENCE, 'subjectAltName');
          const names: NameSubtrees = { uris, dnsNames, unsupported: [] };
          while (!list.done) generalName(list, names, 'subjectAltName');
          break;
        }
        case ID_CE_NAME_CONSTRAINTS: {
          const nc = extensionValue(reader, value, Tag.SEQUENCE, 'nameConstraints');
          const permitted = subtrees(nc, nc.optional(0xa0), 'permittedSubtrees');
          const excluded = subtrees(nc, nc.optional(0xa1), 'excludedSubtrees');
          nc.finish('nameConstraints');
          nameConstraints = { permitted, excluded };
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
    notBefore: tbs.notBefore,
    notAfter: tbs.notAfter,
    serialNumber: serialHex(tbs.serial),
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

const PEM_BOUNDARY = /-----(BEGIN|END) ([A-Z0-9 ]+)-----/g;

/**
 * Splits PEM text into the DER bodies of its CERTIFICATE blocks; other block types are ignored, and so is text
 * between blocks (RFC 7468 §2). A block without its END line is an error, wherever it is: a file read while it
 * was being written in place holds the first certificates only, and a bundle of them would lack the rest. One
 * pass over the boundaries, so a text of many BEGIN lines costs no more than its length.
 */
export function pemCertificatesToDer(pem: string, source: string): Buffer[] {
  /** The block open at this point of the text; a stray END line outside any block is text. */
  let open: string | undefined;
  let cut: string | undefined;
  let certificateBlocks = 0;
  for (const [, kind, label] of pem.matchAll(PEM_BOUNDARY)) {
    if (open !== undefined && (kind === 'BEGIN' || label !== open)) {
      cut = open;
      break;
    }
    open = kind === 'BEGIN' ? label : undefined;
    if (open === 'CERTIFICATE') certificateBlocks++;
  }
  cut ??= open;
  if (cut !== undefined) {
    throw new SidecarError(
      'ERR_CERT_PARSE',
      `${source}: a PEM "${cut}" block has no END line (was the file read while being written?)`,
    );
  }
  const ders: Buffer[] = [];
  for (const match of pem.matchAll(PEM_BLOCK)) {
    if (match[1] === 'CERTIFICATE') ders.push(Buffer.from(match[2].replace(/\s+/g, ''), 'base64'));
  }
  // A block whose body is not base64 lines (a character that does not belong, a header): not one to skip.
  if (ders.length !== certificateBlocks) {
    throw new SidecarError(
      'ERR_CERT_PARSE',
      `${source}: a PEM "CERTIFICATE" block is not base64 lines between its BEGIN and END lines`,
    );
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
