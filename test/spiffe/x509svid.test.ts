// VERIFIER-RULES sections B (leaf) and C (signing certificates, path validation), each as a test.

import { AsnConvert } from '@peculiar/asn1-schema';
import {
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  id_ce_nameConstraints,
  NameConstraints,
} from '@peculiar/asn1-x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CertificateAuthority, issueCertificate, issueIntermediateCa } from '../../src/certs/dev-ca.js';
import { SidecarError } from '../../src/errors.js';
import { parsePemCertificates } from '../../src/spiffe/certificate.js';
import { x509 } from '../../src/spiffe/x509-library.js';
import { verifyX509Svid, verifyX509SvidChain } from '../../src/spiffe/x509svid.js';
import { createDevCa, HOUR, issueSvid, KU, svidWith } from '../helpers/pki.js';

let caA: CertificateAuthority;
let caB: CertificateAuthority;
let bundles: Record<string, string>;

beforeAll(async () => {
  caA = await createDevCa({ trustDomain: 'example.org' });
  caB = await createDevCa({ trustDomain: 'partner.org' });
  bundles = { 'example.org': caA.certPem, 'partner.org': caB.certPem };
});

function expectCode(fn: () => unknown, code: string, message?: string | RegExp) {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a rejection').toBeInstanceOf(SidecarError);
  expect((thrown as SidecarError).code).toBe(code);
  if (message) expect((thrown as SidecarError).message).toMatch(message);
}

function nameConstraints(permitted: GeneralName[], excluded: GeneralName[] = []): x509.Extension {
  const subtrees = (names: GeneralName[]) =>
    names.length ? new GeneralSubtrees(names.map((base) => new GeneralSubtree({ base }))) : undefined;
  const value = AsnConvert.serialize(
    new NameConstraints({ permittedSubtrees: subtrees(permitted), excludedSubtrees: subtrees(excluded) }),
  );
  return new x509.Extension(id_ce_nameConstraints, true, value);
}

describe('valid X509-SVIDs', () => {
  it('accepts a leaf issued by the root of its trust domain', async () => {
    const svid = await issueSvid(caA, { id: 'spiffe://example.org/ns/prod/sa/web' });
    const id = verifyX509Svid(svid.chainPem, bundles);
    expect(id.toString()).toBe('spiffe://example.org/ns/prod/sa/web');
    expect(id.trustDomain).toBe('example.org');
    expect(id.path).toBe('/ns/prod/sa/web');
  });

  it('accepts a leaf issued through an intermediate the peer sends', async () => {
    const intermediate = await issueIntermediateCa(caA);
    const svid = await issueSvid(intermediate, { id: 'spiffe://example.org/api' });
    expect(verifyX509Svid(svid.chainPem, bundles).toString()).toBe('spiffe://example.org/api');
  });

  it('C3: accepts an intermediate that carries a SPIFFE ID with a path', async () => {
    const intermediate = await issueIntermediateCa(caA, { uris: ['spiffe://example.org/ca'] });
    const svid = await issueSvid(intermediate, { id: 'spiffe://example.org/api' });
    expect(verifyX509Svid(svid.chainPem, bundles).toString()).toBe('spiffe://example.org/api');
  });

  it('accepts a leaf of a federated trust domain against that domain bundle', async () => {
    const svid = await issueSvid(caB, { id: 'spiffe://partner.org/billing' });
    expect(verifyX509Svid(svid.chainPem, bundles).toString()).toBe('spiffe://partner.org/billing');
  });

  it('accepts a leaf without EKU, and one with a DNS SAN besides its URI SAN', async () => {
    const noEku = await svidWith(caA, 'spiffe://example.org/a', { extKeyUsage: undefined });
    expect(verifyX509Svid(noEku.chainPem, bundles).toString()).toBe('spiffe://example.org/a');
    const withDns = await svidWith(caA, 'spiffe://example.org/b', { dnsNames: ['b.example.org'] });
    expect(verifyX509Svid(withDns.chainPem, bundles).toString()).toBe('spiffe://example.org/b');
  });
});

describe('B: leaf rules', () => {
  it('B1: rejects a leaf without URI SAN', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/x', { uris: [], dnsNames: ['x.example.org'] });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_NO_URI_SAN', /no URI SAN/);
  });

  it('B1: rejects a leaf with two URI SANs', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', {
      uris: ['spiffe://example.org/a', 'spiffe://example.org/b'],
    });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_MULTIPLE_URI_SANS', /more than one URI SAN/);
  });

  it('B2: rejects a URI SAN with another scheme', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', { uris: ['sparfe://example.org/workload'] });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_INVALID_ID', /scheme/);
  });

  it('B2: rejects a URI SAN that is not a valid SPIFFE ID (dot segment)', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', { uris: ['spiffe://example.org/a/../admin'] });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_INVALID_ID');
  });

  it('B3: rejects a leaf whose SPIFFE ID has no path', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', { uris: ['spiffe://example.org'] });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_INVALID_ID', /no path/);
  });

  it('B4: rejects a leaf with CA:TRUE', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', { isCA: true });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_LEAF_IS_CA', /CA flag set to true/);
  });

  it('B5: rejects keyCertSign on a leaf', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', { keyUsage: KU.digitalSignature | KU.keyCertSign });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_KEY_USAGE', /keyCertSign/);
  });

  it('B6: rejects cRLSign on a leaf', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', { keyUsage: KU.digitalSignature | KU.cRLSign });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_KEY_USAGE', /cRLSign/);
  });

  it('B7: rejects a leaf without digitalSignature', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', { keyUsage: KU.keyEncipherment });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_KEY_USAGE', /digitalSignature/);
  });

  it('B9: rejects an EKU without clientAuth (serverAuth only)', async () => {
    const svid = await svidWith(caA, 'spiffe://example.org/a', { extKeyUsage: [x509.ExtendedKeyUsage.serverAuth] });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_SVID_EXT_KEY_USAGE');
  });

  it('B11: rejects an expired leaf, and a leaf at NotAfter + 1 s', async () => {
    const expired = await svidWith(caA, 'spiffe://example.org/a', {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    expectCode(() => verifyX509Svid(expired.chainPem, bundles), 'ERR_CERT_EXPIRED', /expired/);
    const fresh = await issueSvid(caA, { id: 'spiffe://example.org/a' });
    const now = new Date(fresh.cert.notAfter.getTime() + 1000);
    expectCode(() => verifyX509Svid(fresh.chainPem, bundles, { now }), 'ERR_CERT_EXPIRED');
  });

  it('B11: rejects a leaf that is not valid yet', async () => {
    const future = await svidWith(caA, 'spiffe://example.org/a', { notBefore: new Date(Date.now() + HOUR) });
    expectCode(() => verifyX509Svid(future.chainPem, bundles), 'ERR_CERT_NOT_YET_VALID');
  });

  it('B13: the first certificate is the leaf; [intermediate, leaf] is rejected', async () => {
    const intermediate = await issueIntermediateCa(caA);
    const svid = await issueSvid(intermediate, { id: 'spiffe://example.org/api' });
    expectCode(() => verifyX509Svid(intermediate.certPem + svid.certPem, bundles), 'ERR_SVID_NO_URI_SAN');
  });

  it('rejects a leaf with an unhandled critical extension', async () => {
    const ext = new x509.Extension('1.3.6.1.4.1.99999.1', true, new Uint8Array([0x05, 0x00]));
    const svid = await svidWith(caA, 'spiffe://example.org/a', { extensions: [ext] });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_CERT_UNKNOWN_CRITICAL_EXTENSION');
  });

  it('rejects a leaf with two SAN extensions (the second one smuggling another ID)', async () => {
    const second = new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://example.org/admin' }]);
    const svid = await svidWith(caA, 'spiffe://example.org/a', { extensions: [second] });
    expect(() => verifyX509Svid(svid.chainPem, bundles)).toThrow(SidecarError);
  });

  it('rejects input that is not a certificate', () => {
    expectCode(() => verifyX509Svid('hello', bundles), 'ERR_CERT_PARSE');
    expectCode(
      () => verifyX509Svid('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', bundles),
      'ERR_CERT_PARSE',
    );
  });
});

describe('C: signing certificates and path validation', () => {
  it('C1: rejects an intermediate with CA:FALSE', async () => {
    const notCa = await issueIntermediateCa(caA, { isCA: false });
    const svid = await issueSvid(notCa, { id: 'spiffe://example.org/a' });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_CHAIN_SIGNING_CERT', /CA flag/);
  });

  it('C2: rejects an intermediate without keyCertSign', async () => {
    const crlOnly = await issueIntermediateCa(caA, { keyUsage: KU.cRLSign });
    const svid = await issueSvid(crlOnly, { id: 'spiffe://example.org/a' });
    // OpenSSL's issuer check already refuses a CA that may not sign certificates, so no path is found.
    expect(() => verifyX509Svid(svid.chainPem, bundles)).toThrow(SidecarError);
    try {
      verifyX509Svid(svid.chainPem, bundles);
    } catch (err) {
      expect(['ERR_CHAIN_SIGNING_CERT', 'ERR_CHAIN_UNTRUSTED']).toContain((err as SidecarError).code);
    }
  });

  it('C4: rejects a pathLen=0 intermediate that issued another CA', async () => {
    const first = await issueIntermediateCa(caA, { pathLength: 0 });
    const second = await issueIntermediateCa(first);
    const svid = await issueSvid(second, { id: 'spiffe://example.org/a' });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_CHAIN_PATH_LEN');
  });

  it('C4: accepts a pathLen=0 intermediate that issued the leaf directly', async () => {
    const first = await issueIntermediateCa(caA, { pathLength: 0 });
    const svid = await issueSvid(first, { id: 'spiffe://example.org/a' });
    expect(verifyX509Svid(svid.chainPem, bundles).toString()).toBe('spiffe://example.org/a');
  });

  it('C4: URI name constraints on the path are enforced', async () => {
    const permitOther = await issueIntermediateCa(caA, {
      extensions: [nameConstraints([new GeneralName({ uniformResourceIdentifier: 'other.org' })])],
    });
    const outside = await issueSvid(permitOther, { id: 'spiffe://example.org/a' });
    expectCode(() => verifyX509Svid(outside.chainPem, bundles), 'ERR_CHAIN_NAME_CONSTRAINTS', /not permitted/);

    const permitOwn = await issueIntermediateCa(caA, {
      extensions: [nameConstraints([new GeneralName({ uniformResourceIdentifier: 'example.org' })])],
    });
    const inside = await issueSvid(permitOwn, { id: 'spiffe://example.org/a' });
    expect(verifyX509Svid(inside.chainPem, bundles).toString()).toBe('spiffe://example.org/a');

    const excludeOwn = await issueIntermediateCa(caA, {
      extensions: [nameConstraints([], [new GeneralName({ uniformResourceIdentifier: 'example.org' })])],
    });
    const excluded = await issueSvid(excludeOwn, { id: 'spiffe://example.org/a' });
    expectCode(() => verifyX509Svid(excluded.chainPem, bundles), 'ERR_CHAIN_NAME_CONSTRAINTS', /excluded/);
  });

  it('C4: an excluded empty DNS constraint excludes every DNS name; a permitted one permits them all', async () => {
    const dnsSvid = (issuer: Awaited<ReturnType<typeof issueIntermediateCa>>) =>
      issueSvid(issuer, { id: 'spiffe://example.org/w', template: { dnsNames: ['web.example.org'] } });
    const excludeAll = await issueIntermediateCa(caA, {
      extensions: [nameConstraints([], [new GeneralName({ dNSName: '' })])],
    });
    const excluded = await dnsSvid(excludeAll);
    expectCode(() => verifyX509Svid(excluded.chainPem, bundles), 'ERR_CHAIN_NAME_CONSTRAINTS', /excluded/);
    const permitAll = await issueIntermediateCa(caA, {
      extensions: [nameConstraints([new GeneralName({ dNSName: '' })])],
    });
    const permitted = await dnsSvid(permitAll);
    expect(verifyX509Svid(permitted.chainPem, bundles).toString()).toBe('spiffe://example.org/w');
  });

  it('C4: name constraints of a type we do not evaluate fail closed', async () => {
    const ipOnly = await issueIntermediateCa(caA, {
      extensions: [nameConstraints([new GeneralName({ iPAddress: '10.0.0.0/8' })])],
    });
    const svid = await issueSvid(ipOnly, { id: 'spiffe://example.org/a' });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_CHAIN_NAME_CONSTRAINTS', /not supported/);
  });

  it('C5: a CA of trust domain B cannot vouch for an ID in trust domain A (even with both bundles loaded)', async () => {
    const forged = await issueSvid(caB, { id: 'spiffe://example.org/admin' });
    expectCode(() => verifyX509Svid(forged.chainPem, bundles), 'ERR_CHAIN_UNTRUSTED', /trust domain "example.org"/);
    const intermediateB = await issueIntermediateCa(caB);
    const forgedViaIntermediate = await issueSvid(intermediateB, { id: 'spiffe://example.org/admin' });
    expectCode(() => verifyX509Svid(forgedViaIntermediate.chainPem, bundles), 'ERR_CHAIN_UNTRUSTED');
  });

  it('C5: a CA with the same name but another key does not verify the leaf', async () => {
    const impostor = await createDevCa({ trustDomain: 'example.org' });
    const svid = await issueSvid(impostor, { id: 'spiffe://example.org/a' });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_CHAIN_UNTRUSTED');
  });

  it('C6: no bundle for the trust domain means untrusted', async () => {
    const domain1 = await createDevCa({ trustDomain: 'domain1.test' });
    const domain2 = await createDevCa({ trustDomain: 'domain2.test' });
    const svid = await issueSvid(domain1, { id: 'spiffe://domain1.test/x' });
    expectCode(
      () => verifyX509Svid(svid.chainPem, { 'domain2.test': domain2.certPem }),
      'ERR_NO_BUNDLE',
      /no X.509 bundle found for trust domain: "domain1.test"/,
    );
  });

  it('C7: an empty bundle rejects every SVID of its trust domain', async () => {
    const svid = await issueSvid(caA, { id: 'spiffe://example.org/a' });
    const chain = parsePemCertificates(svid.chainPem, 'test');
    const empty = new Map([['example.org', { trustDomain: 'example.org', authorities: [] }]]);
    expectCode(() => verifyX509SvidChain(chain, empty), 'ERR_NO_BUNDLE', /no authorities/);
  });

  it('C8: a root the peer sends itself is not a trust anchor', async () => {
    const rogue = await createDevCa({ trustDomain: 'example.org' });
    const svid = await issueSvid(rogue, { id: 'spiffe://example.org/a' });
    expectCode(() => verifyX509Svid(svid.chainPem + rogue.certPem, bundles), 'ERR_CHAIN_UNTRUSTED');
  });

  it('rejects a chain whose intermediate has expired', async () => {
    const old = await issueIntermediateCa(caA, {
      notBefore: new Date(Date.now() - 3 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    const svid = await issueCertificate(old, {
      uris: ['spiffe://example.org/a'],
      keyUsage: KU.digitalSignature,
      notBefore: new Date(Date.now() - 2 * HOUR),
    });
    expectCode(() => verifyX509Svid(svid.chainPem, bundles), 'ERR_CERT_EXPIRED', /certificate 2 of the chain/);
  });
});

describe('bundles', () => {
  it('refuses a workload certificate given as a bundle', async () => {
    const svid = await issueSvid(caA, { id: 'spiffe://example.org/a' });
    expectCode(() => verifyX509Svid(svid.chainPem, { 'example.org': svid.certPem }), 'ERR_BUNDLE_INVALID', /not a CA/);
  });

  it('G5: refuses a bundle file that merges the roots of two trust domains', async () => {
    const svid = await issueSvid(caA, { id: 'spiffe://example.org/a' });
    expectCode(
      () => verifyX509Svid(svid.chainPem, { 'example.org': caA.certPem + caB.certPem }),
      'ERR_BUNDLE_INVALID',
      /partner.org/,
    );
  });

  it('accepts trust domains given as spiffe:// IDs', async () => {
    const svid = await issueSvid(caA, { id: 'spiffe://example.org/a' });
    expect(verifyX509Svid(svid.chainPem, { 'spiffe://example.org': caA.certPem }).toString()).toBe(
      'spiffe://example.org/a',
    );
  });
});
