// The PEM reader of certificate and bundle files (RFC 7468): it reads every CERTIFICATE block and ignores text
// between blocks and blocks of other types, but a block it cannot read whole is an error, never left out: a
// file read while it is being written in place would otherwise be taken for all it holds.
import { beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority } from '../../src/certs/dev-ca.js';
import { SidecarError } from '../../src/errors.js';
import { pemCertificatesToDer } from '../../src/spiffe/certificate.js';
import { createDevCa, issueSvid } from '../helpers/pki.js';

let a: CertificateAuthority;
let b: CertificateAuthority;
let keyPem: string;
beforeAll(async () => {
  [a, b] = await Promise.all([
    createDevCa({ trustDomain: 'example.org' }),
    createDevCa({ trustDomain: 'example.org' }),
  ]);
  keyPem = (await issueSvid(a, { id: 'spiffe://example.org/w' })).keyPem;
});

function refusal(pem: string): string {
  try {
    pemCertificatesToDer(pem, '--mtls-ca-file ca.crt');
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    expect((err as SidecarError).code).toBe('ERR_CERT_PARSE');
    expect((err as SidecarError).message).toContain('--mtls-ca-file ca.crt');
    return (err as SidecarError).message;
  }
  throw new Error('expected ERR_CERT_PARSE');
}

describe('PEM blocks', () => {
  it('reads every certificate, with CRLF lines, text between blocks, a stray END line and a key beside them', () => {
    const crlf = b.certPem.replace(/\n/g, '\r\n');
    const text = `issuer: example.org\n${a.certPem}-----END CERTIFICATE-----\nsome text\n${crlf}${keyPem}`;
    expect(pemCertificatesToDer(text, 'test')).toHaveLength(2);
  });

  it('refuses a last block cut short (the file still being written)', () => {
    expect(refusal(a.certPem + b.certPem.slice(0, 120))).toMatch(/"CERTIFICATE" block has no END line/);
  });

  it('refuses a block cut short before a whole one, and one ended by the END line of another type', () => {
    expect(refusal(a.certPem.slice(0, 120) + b.certPem)).toMatch(/no END line/);
    const mismatched = a.certPem.replace('-----END CERTIFICATE-----', '-----END PRIVATE KEY-----');
    expect(refusal(mismatched + b.certPem)).toMatch(/no END line/);
  });

  it('refuses a certificate block whose body is not base64 lines', () => {
    const lines = a.certPem.split('\n');
    lines.splice(2, 0, 'not base64!');
    expect(refusal(lines.join('\n') + b.certPem)).toMatch(/not base64 lines/);
  });

  it('reads many BEGIN lines without an END in one pass: refused, naming the first block left open', () => {
    // The first cut of this check searched the rest of the text for each BEGIN line's END: quadratic.
    expect(refusal('-----BEGIN CERTIFICATE-----\n'.repeat(100_000) + '-----END CERTIFICATE-----\n')).toMatch(
      /"CERTIFICATE" block has no END line/,
    );
  });
});
