// The certificate reader (src/spiffe/der.ts, src/spiffe/certificate.ts) against @peculiar/asn1-x509, which it
// replaced on the start-up and new-peer paths (issue 17): generated certificates with every extension the SPIFFE
// rules read must mean the same to both; mutated ones must never mean something else to us; and what DER
// forbids but a BER reader accepts is refused with ERR_CERT_PARSE.
import { X509Certificate as NodeX509Certificate, webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BasicConstraints,
  Certificate as AsnCertificate,
  ExtendedKeyUsage,
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_ce_subjectAltName,
  KeyUsage as AsnKeyUsage,
  Name as AsnName,
  NameConstraints,
  SubjectAlternativeName,
} from '@peculiar/asn1-x509';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { SidecarError } from '../../src/errors.js';
import { parseCertificate } from '../../src/spiffe/certificate.js';
import { DerReader, Tag } from '../../src/spiffe/der.js';
import { x509 } from '../../src/spiffe/x509-library.js';

// ── The reference: the reader this one replaced, on @peculiar/asn1-x509 ──

interface Facts {
  notBefore: number;
  notAfter: number;
  serialNumber: string;
  uris: string[];
  dnsNames: string[];
  isCA: boolean;
  pathLength: number | undefined;
  keyUsage: number | undefined;
  keyUsageCritical: boolean;
  extKeyUsage: string[] | undefined;
  nameConstraints: unknown;
  extensionProblems: string[];
}

const HANDLED = new Set([
  id_ce_basicConstraints,
  id_ce_keyUsage,
  id_ce_extKeyUsage,
  id_ce_subjectAltName,
  id_ce_nameConstraints,
  '2.5.29.14',
  '2.5.29.35',
  '2.5.29.32',
]);

function referenceSubtrees(list: NameConstraints['permittedSubtrees']) {
  const out = { uris: [] as string[], dnsNames: [] as string[], unsupported: [] as string[] };
  for (const { base } of list ?? []) {
    if (base.uniformResourceIdentifier !== undefined) out.uris.push(base.uniformResourceIdentifier);
    else if (base.dNSName !== undefined) out.dnsNames.push(base.dNSName);
    else out.unsupported.push(Object.keys(base).find((k) => (base as Record<string, unknown>)[k] !== undefined) ?? '?');
  }
  return out;
}

function reference(der: Buffer): Facts {
  new NodeX509Certificate(der);
  const tbs = AsnConvert.parse(der, AsnCertificate).tbsCertificate;
  const facts: Facts = {
    notBefore: tbs.validity.notBefore.getTime().getTime(),
    notAfter: tbs.validity.notAfter.getTime().getTime(),
    serialNumber: Buffer.from(tbs.serialNumber)
      .toString('hex')
      .replace(/^(00)+(?=[0-9a-f]{2})/, ''),
    uris: [],
    dnsNames: [],
    isCA: false,
    pathLength: undefined,
    keyUsage: undefined,
    keyUsageCritical: false,
    extKeyUsage: undefined,
    nameConstraints: undefined,
    extensionProblems: [],
  };
  const seen = new Set<string>();
  for (const ext of tbs.extensions ?? []) {
    const id = ext.extnID;
    if (seen.has(id)) facts.extensionProblems.push(`extension ${id} appears more than once`);
    seen.add(id);
    if (ext.critical && !HANDLED.has(id)) facts.extensionProblems.push(`unhandled critical extension ${id}`);
    const value = ext.extnValue.buffer;
    if (id === id_ce_basicConstraints) {
      const bc = AsnConvert.parse(value, BasicConstraints);
      facts.isCA = bc.cA;
      facts.pathLength = bc.pathLenConstraint;
    } else if (id === id_ce_keyUsage) {
      facts.keyUsage = AsnConvert.parse(value, AsnKeyUsage).toNumber();
      facts.keyUsageCritical = ext.critical;
    } else if (id === id_ce_extKeyUsage) {
      facts.extKeyUsage = AsnConvert.parse(value, ExtendedKeyUsage).map(String);
    } else if (id === id_ce_subjectAltName) {
      for (const name of AsnConvert.parse(value, SubjectAlternativeName)) {
        if (name.uniformResourceIdentifier !== undefined) facts.uris.push(name.uniformResourceIdentifier);
        else if (name.dNSName !== undefined) facts.dnsNames.push(name.dNSName);
      }
    } else if (id === id_ce_nameConstraints) {
      const nc = AsnConvert.parse(value, NameConstraints);
      facts.nameConstraints = {
        permitted: referenceSubtrees(nc.permittedSubtrees),
        excluded: referenceSubtrees(nc.excludedSubtrees),
      };
    }
  }
  return facts;
}

function ours(der: Buffer): Facts {
  const c = parseCertificate(der, 'test');
  return {
    notBefore: c.notBefore.getTime(),
    notAfter: c.notAfter.getTime(),
    serialNumber: c.serialNumber,
    uris: [...c.uris],
    dnsNames: [...c.dnsNames],
    isCA: c.isCA,
    pathLength: c.pathLength,
    keyUsage: c.keyUsage,
    keyUsageCritical: c.keyUsageCritical,
    extKeyUsage: c.extKeyUsage && [...c.extKeyUsage],
    nameConstraints: c.nameConstraints,
    extensionProblems: [...c.extensionProblems],
  };
}

// ── Generated certificates ──

let keys: CryptoKeyPair;
let base: Buffer;

beforeAll(async () => {
  keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair;
  base = await certificate({
    serial: '01',
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2027-01-01T00:00:00Z'),
    extensions: [],
  });
});

interface Spec {
  serial: string;
  notBefore: Date;
  notAfter: Date;
  extensions: x509.Extension[];
}

async function certificate(spec: Spec): Promise<Buffer> {
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: spec.serial,
    subject: 'CN=subject',
    issuer: 'CN=issuer',
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: spec.extensions,
  });
  return Buffer.from(cert.rawData);
}

// asn1js (under asn1-x509) encodes and reads arcs up to 2^48 only; beyond that OpenSSL is the reference (below).
const oidArc = fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 2 ** 48 }));
const oid = fc
  .tuple(fc.constantFrom(0, 1, 2), fc.integer({ min: 0, max: 39 }), fc.array(oidArc, { minLength: 1, maxLength: 5 }))
  .map(([a, b, rest]) => [a, b, ...rest].join('.'));
const ekuOid = fc.oneof(
  fc.constantFrom('1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2', '2.5.29.37.0', '1.3.6.1.5.5.7.3.3'),
  oid,
);
const ia5 = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });
const generalName = fc.oneof(
  ia5.map((v) => new GeneralName({ uniformResourceIdentifier: `spiffe://example.org/${v}` })),
  ia5.map((v) => new GeneralName({ uniformResourceIdentifier: v })),
  ia5.map((v) => new GeneralName({ dNSName: v })),
  ia5.map((v) => new GeneralName({ rfc822Name: v })),
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => new GeneralName({ iPAddress: [...b].join('.') })),
  fc.constant(new GeneralName({ directoryName: AsnConvert.parse(AsnConvert.serialize(new AsnName([])), AsnName) })),
  oid.map((v) => new GeneralName({ registeredID: v })),
);
const critical = fc.boolean();
const extension: fc.Arbitrary<x509.Extension> = fc.oneof(
  fc
    .tuple(fc.boolean(), fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }), critical)
    .map(([ca, pathLength, c]) => new x509.BasicConstraintsExtension(ca, pathLength, c)),
  // 0 (no bit): asn1-x509 reads NaN, we read 0; both refuse it as no digitalSignature (tested apart below).
  fc.tuple(fc.integer({ min: 1, max: 511 }), critical).map(([usages, c]) => new x509.KeyUsagesExtension(usages, c)),
  fc
    .tuple(fc.array(ekuOid, { maxLength: 4 }), critical)
    .map(([list, c]) => new x509.ExtendedKeyUsageExtension(list, c)),
  fc
    .tuple(fc.array(generalName, { maxLength: 4 }), critical)
    .map(
      ([names, c]) =>
        new x509.Extension(id_ce_subjectAltName, c, AsnConvert.serialize(new SubjectAlternativeName(names))),
    ),
  fc
    .tuple(fc.array(generalName, { maxLength: 3 }), fc.array(generalName, { maxLength: 3 }), critical)
    .map(([permitted, excluded, c]) => {
      const subtrees = (names: GeneralName[]) =>
        names.length ? new GeneralSubtrees(names.map((n) => new GeneralSubtree({ base: n }))) : undefined;
      const value = new NameConstraints({
        permittedSubtrees: subtrees(permitted),
        excludedSubtrees: subtrees(excluded),
      });
      return new x509.Extension(id_ce_nameConstraints, c, AsnConvert.serialize(value));
    }),
  fc
    .tuple(oid, critical, fc.uint8Array({ maxLength: 16 }))
    .map(([id, c, bytes]) => new x509.Extension(id, c, new Uint8Array([0x04, bytes.length, ...bytes]))),
);
// Whole seconds from 1950 to 2100: UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
const when = fc.integer({ min: -631152000, max: 4102444799 }).map((s) => new Date(s * 1000));
const spec: fc.Arbitrary<Spec> = fc.record({
  serial: fc.uint8Array({ minLength: 1, maxLength: 20 }).map((b) => Buffer.from(b).toString('hex')),
  notBefore: when,
  notAfter: when,
  extensions: fc.array(extension, { maxLength: 7 }),
});

describe('the certificate reader means what asn1-x509 means', () => {
  it('250 generated certificates: validity, serial, SANs, basic constraints, key usage, EKU, name constraints, problems', async () => {
    await fc.assert(
      fc.asyncProperty(spec, async (s) => {
        const der = await certificate(s);
        expect(ours(der)).toEqual(reference(der));
      }),
      { numRuns: 250 },
    );
  });

  it('a mutated certificate that we read means to us what it means to asn1-x509, if it reads it', async () => {
    const der = await certificate({
      serial: '00ff01',
      notBefore: new Date('2026-01-01T00:00:00Z'),
      notAfter: new Date('2060-01-01T00:00:00Z'),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.2'], false),
        new x509.Extension(
          id_ce_subjectAltName,
          false,
          AsnConvert.serialize(
            new SubjectAlternativeName([
              new GeneralName({ uniformResourceIdentifier: 'spiffe://example.org/a' }),
              new GeneralName({ dNSName: 'a.example.org' }),
            ]),
          ),
        ),
      ],
    });
    let read = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: der.length - 1 }), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 3,
        }),
        (edits) => {
          const bytes = Buffer.from(der);
          for (const [at, value] of edits) bytes[at] = value;
          let mine: Facts | SidecarError;
          try {
            mine = ours(bytes);
          } catch (err) {
            expect(err).toBeInstanceOf(SidecarError);
            expect((err as SidecarError).code).toBe('ERR_CERT_PARSE');
            return;
          }
          let theirs: Facts | undefined;
          try {
            theirs = reference(bytes);
          } catch {
            // We read what it refuses: only where we do not look (names, key, signature) is that expected.
            return;
          }
          read++;
          expect(mine).toEqual(theirs);
        },
      ),
      { numRuns: 3000 },
    );
    expect(read).toBeGreaterThan(0);
  });
});

// ── What DER forbids ──

/** DER length octets. */
function length(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return [0x80 | bytes.length, ...bytes];
}
const tlv = (tag: number, ...content: (number[] | Buffer)[]) => {
  const body = Buffer.concat(content.map((c) => Buffer.from(c)));
  return Buffer.from([tag, ...length(body.length), ...body]);
};
const ascii = (s: string) => [...Buffer.from(s, 'latin1')];

/** The parts of the base certificate that we skip, to build others around. */
function parts() {
  const r = new DerReader(base);
  const cert = r.enter(Tag.SEQUENCE, 'c');
  const tbsTlv = cert.next();
  const sigAlg = cert.next();
  const sig = cert.next();
  const tbs = cert.inside(tbsTlv);
  tbs.next(); // version
  tbs.next(); // serial
  const alg = tbs.next();
  const issuer = tbs.next();
  tbs.next(); // validity
  const subject = tbs.next();
  const spki = tbs.next();
  const whole = (t: { tag: number; start: number; end: number }) => tlv(t.tag, base.subarray(t.start, t.end));
  return {
    sigAlg: whole(sigAlg),
    sig: whole(sig),
    alg: whole(alg),
    issuer: whole(issuer),
    subject: whole(subject),
    spki: whole(spki),
  };
}

const UTC = (s: string) => tlv(0x17, ascii(s));
const GEN = (s: string) => tlv(0x18, ascii(s));

/** A certificate from its fields, with whatever extension DER (or not-DER) we hand it. */
function build({
  extensions = [] as Buffer[],
  notBefore = UTC('260101000000Z'),
  notAfter = UTC('270101000000Z'),
  extensionsWrapper = (list: Buffer) => tlv(0xa3, list),
}: {
  extensions?: Buffer[];
  notBefore?: Buffer;
  notAfter?: Buffer;
  extensionsWrapper?: (list: Buffer) => Buffer;
} = {}): Buffer {
  const p = parts();
  const tbs = tlv(
    0x30,
    tlv(0xa0, tlv(0x02, [2])),
    tlv(0x02, [1]),
    p.alg,
    p.issuer,
    tlv(0x30, notBefore, notAfter),
    p.subject,
    p.spki,
    ...(extensions.length ? [extensionsWrapper(tlv(0x30, ...extensions))] : []),
  );
  return tlv(0x30, tbs, p.sigAlg, p.sig);
}

const OID_SAN = [0x55, 0x1d, 0x11];
const OID_BC = [0x55, 0x1d, 0x13];
const OID_KU = [0x55, 0x1d, 0x0f];
const OID_EKU = [0x55, 0x1d, 0x25];
const ext = (oidBytes: number[], value: Buffer, criticalBytes?: number[]) =>
  tlv(0x30, tlv(0x06, oidBytes), ...(criticalBytes ? [tlv(0x01, criticalBytes)] : []), tlv(0x04, value));
const san = (...names: Buffer[]) => ext(OID_SAN, tlv(0x30, ...names));
const uri = (s: string | number[]) => tlv(0x86, typeof s === 'string' ? ascii(s) : s);

/** Ours alone: OpenSSL's own parse is given (it might refuse first, and we must refuse on our own). */
function parseWithOpenSslSkipped(der: Buffer) {
  return parseCertificate(der, 'built', new NodeX509Certificate(base));
}

function refused(der: Buffer, why: RegExp) {
  let thrown: unknown;
  try {
    parseWithOpenSslSkipped(der);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected ERR_CERT_PARSE').toBeInstanceOf(SidecarError);
  expect((thrown as SidecarError).code).toBe('ERR_CERT_PARSE');
  expect((thrown as SidecarError).message).toMatch(why);
}

describe('what DER forbids is refused, with ERR_CERT_PARSE', () => {
  it('the built certificates are read when they are DER (the cases below differ from them in one thing)', () => {
    const c = parseWithOpenSslSkipped(
      build({ extensions: [san(uri('spiffe://example.org/a')), ext(OID_BC, tlv(0x30), [0x00])] }),
    );
    expect(c.uris).toEqual(['spiffe://example.org/a']);
    expect(c.notBefore.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    // An explicit critical FALSE is not DER, but Go's crypto/x509 reads it, and so do we.
    expect(c.extensionProblems).toEqual([]);
    expect(new NodeX509Certificate(build()).subject).toBe('CN=subject');
  });

  it('an indefinite length (BER)', () => {
    const der = build();
    const indefinite = Buffer.concat([
      Buffer.from([0x30, 0x80]),
      der.subarray(der[1] & 0x80 ? 2 + (der[1] & 0x7f) : 2),
      Buffer.from([0, 0]),
    ]);
    refused(indefinite, /indefinite length/);
  });

  it('a long-form length under 128, and a length with a leading zero byte', () => {
    refused(
      build({ extensions: [san(Buffer.from([0x86, 0x81, 0x05, ...ascii('abcde')]))] }),
      /long-form length under 128/,
    );
    const der = build();
    const count = der[1] & 0x7f;
    const padded = Buffer.concat([Buffer.from([0x30, 0x80 | (count + 1), 0x00]), der.subarray(2)]);
    refused(padded, /leading zero bytes/);
  });

  it('a value that runs past its container, and bytes after the certificate', () => {
    refused(
      build({ extensions: [ext(OID_SAN, Buffer.from([0x30, 0x05, 0x86, 0x01, 0x61]))] }),
      /runs past its container/,
    );
    refused(Buffer.concat([build(), Buffer.from([0x00])]), /unexpected bytes after the certificate/);
  });

  it('a BOOLEAN other than 00 or FF (critical, cA)', () => {
    refused(build({ extensions: [ext(OID_BC, tlv(0x30), [0x01])] }), /00 or FF/);
    refused(build({ extensions: [ext(OID_BC, tlv(0x30, tlv(0x01, [0x01])))] }), /basicConstraints cA.*00 or FF/);
  });

  it('a path length with a leading zero byte, or negative', () => {
    refused(
      build({ extensions: [ext(OID_BC, tlv(0x30, tlv(0x01, [0xff]), tlv(0x02, [0x00, 0x05])))] }),
      /leading zero/,
    );
    refused(build({ extensions: [ext(OID_BC, tlv(0x30, tlv(0x01, [0xff]), tlv(0x02, [0xff])))] }), /negative/);
  });

  it('an OID arc padded with 0x80, and one cut short', () => {
    refused(build({ extensions: [ext([0x55, 0x80, 0x1d, 0x11], tlv(0x30))] }), /leading 0x80/);
    refused(build({ extensions: [ext(OID_EKU, tlv(0x30, tlv(0x06, [0x2b, 0x86])))] }), /truncated OID arc/);
  });

  it('a key usage BIT STRING with its padding bits set, or a bad unused-bits count', () => {
    refused(build({ extensions: [ext(OID_KU, tlv(0x03, [0x07, 0x81]))] }), /padding bits set/);
    refused(build({ extensions: [ext(OID_KU, tlv(0x03, [0x08, 0x80]))] }), /unused-bits/);
    refused(build({ extensions: [ext(OID_KU, tlv(0x03, [0x01]))] }), /unused-bits/);
    // No bit at all is DER, and means no usage (the SVID rules then refuse it for lack of digitalSignature).
    expect(parseWithOpenSslSkipped(build({ extensions: [ext(OID_KU, tlv(0x03, [0x00]))] })).keyUsage).toBe(0);
  });

  it('times that are not RFC 5280 form: no seconds, an offset, a fraction, a day that does not exist', () => {
    refused(build({ notBefore: UTC('2601010000Z') }), /notBefore: not RFC 5280/);
    refused(build({ notBefore: UTC('260101000000+0100') }), /notBefore: not RFC 5280/);
    refused(build({ notAfter: GEN('20600101000000.5Z') }), /notAfter: not RFC 5280/);
    refused(build({ notAfter: UTC('260230000000Z') }), /notAfter: not a valid date/);
    refused(build({ notAfter: UTC('261301000000Z') }), /notAfter: not a valid date/);
    refused(build({ notAfter: UTC('2601010000 0Z') }), /a non-digit/);
    refused(build({ notAfter: tlv(0x13, ascii('260101000000Z')) }), /not a UTCTime or GeneralizedTime/);
    expect(parseWithOpenSslSkipped(build({ notAfter: GEN('20600101000000Z') })).notAfter.toISOString()).toBe(
      '2060-01-01T00:00:00.000Z',
    );
    expect(parseWithOpenSslSkipped(build({ notBefore: UTC('500101000000Z') })).notBefore.toISOString()).toBe(
      '1950-01-01T00:00:00.000Z',
    );
  });

  it('a URI or DNS SAN that is not ASCII, and a SAN entry that is not a GeneralName', () => {
    refused(build({ extensions: [san(uri([...ascii('spiffe://example.org/'), 0xc3, 0xa9]))] }), /not an IA5String/);
    refused(build({ extensions: [san(tlv(0x82, [0x61, 0xff]))] }), /not an IA5String/);
    refused(build({ extensions: [san(tlv(0x89, ascii('x')))] }), /not a GeneralName/);
  });

  it('an OID arc beyond 2^53 is read exactly, as OpenSSL reads it (asn1js cannot)', () => {
    const big = 2n ** 127n + 12345n;
    const septets: number[] = [];
    for (let v = big; v > 0n; v >>= 7n) septets.unshift(Number(v & 0x7fn) | (septets.length ? 0x80 : 0));
    const der = build({ extensions: [ext(OID_EKU, tlv(0x30, tlv(0x06, [0x69, ...septets])))] });
    expect(parseCertificate(der, 'built').extKeyUsage).toEqual([`2.25.${big}`]);
    expect(new NodeX509Certificate(der).keyUsage).toEqual([`2.25.${big}`]);
  });

  it('a high tag number, and an extension list wrapped twice or left open', () => {
    refused(build({ extensions: [san(Buffer.from([0x9f, 0x1f, 0x01, 0x61]))] }), /unsupported tag/);
    refused(
      build({
        extensions: [san(uri('spiffe://example.org/a'))],
        extensionsWrapper: (list) => tlv(0xa3, list, tlv(0x05)),
      }),
      /unexpected bytes after extensions/,
    );
  });
});
