// The serial we log for a certificate is the one OpenSSL, Node and TLS clients print: a serial whose top bit is
// set carries a 0x00 sign byte in DER (X.690 §8.3.2) that must not show (half of SPIRE's random serials do).
import { X509Certificate } from 'node:crypto';
import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import { parseCertificate } from '../../src/spiffe/certificate.js';

async function selfSigned(serialNumber: string): Promise<Buffer> {
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    { serialNumber, name: 'CN=serial', keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } },
    webcrypto as unknown as Crypto,
  );
  return Buffer.from(cert.rawData);
}

describe('certificate serial numbers', () => {
  for (const serial of ['00ebb8de0102030405060708090a0b0c0d', '7f0102030405060708090a0b0c0d0e0f', '0080', '01']) {
    it(`DER serial ${serial} is logged as OpenSSL prints it`, async () => {
      const der = await selfSigned(serial);
      const node = new X509Certificate(der).serialNumber.toLowerCase().replace(/^(00)+(?=.)/, '');
      const ours = parseCertificate(der, 'test').serialNumber;
      expect(ours).toBe(node);
      expect(ours).not.toMatch(/^00/);
    });
  }
});
