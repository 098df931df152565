import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createDevCa, issueSvid, serialNumberFrom } from '../../src/certs/dev-ca.js';
import { parsePemCertificates } from '../../src/spiffe/certificate.js';
import { verifyX509Svid } from '../../src/spiffe/x509svid.js';

describe('dev CA', () => {
  it.each([0x00, 0x01, 0x7f, 0x80, 0xff])('a serial whose random first byte is 0x%s keeps 16 bytes in DER', (first) => {
    const bytes = Buffer.alloc(16, 0xab);
    bytes[0] = first;
    const serial = serialNumberFrom(bytes);
    expect(serial).toHaveLength(32);
    expect(Number.parseInt(serial.slice(0, 2), 16)).toBeGreaterThanOrEqual(0x01);
    expect(Number.parseInt(serial.slice(0, 2), 16)).toBeLessThanOrEqual(0x7f);
  });

  it('reports the serial the certificate carries, and issues a valid SVID', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const svid = await issueSvid(ca, { id: 'spiffe://example.org/web' });
    expect(new X509Certificate(svid.certPem).serialNumber.toLowerCase()).toBe(svid.serialNumber);
    expect(parsePemCertificates(svid.certPem, 'test')[0].serialNumber).toBe(svid.serialNumber);
    expect(verifyX509Svid(svid.chainPem, { 'example.org': ca.certPem }).toString()).toBe('spiffe://example.org/web');
  });

  it('refuses an SVID without a path', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    await expect(issueSvid(ca, { id: 'spiffe://example.org' })).rejects.toMatchObject({
      code: 'ERR_INVALID_SPIFFE_ID',
    });
  });
});
