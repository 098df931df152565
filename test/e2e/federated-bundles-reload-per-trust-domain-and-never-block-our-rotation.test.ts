// File mode, federated bundles on reload: a CA added is trusted for new connections, a deleted or empty
// bundle file makes that trust domain untrusted (fail closed) without blocking our own rotation.
import { execFileSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { issueIntermediateCa } from '../../src/certs/dev-ca.js';
import { expectRejected, requestVia } from '../helpers/client.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { createDevCa, issueSvid, tempDir, writeServingFiles } from '../helpers/pki.js';
import { normalizeSerial, servedSerial } from '../helpers/server-serial.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const SERVER_ID = 'spiffe://example.org/server';
const CLIENT_ID = 'spiffe://example.org/client';
const PARTNER_ID = 'spiffe://partner.org/billing';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let partner: CertificateAuthority;
let client: IssuedCertificate;
let billing: IssuedCertificate;
let app: EchoApp;
let sidecar: TestSidecar;
let fedFile: string;

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  partner = await createDevCa({ trustDomain: 'partner.org' });
  client = await issueSvid(ca, { id: CLIENT_ID });
  billing = await issueSvid(partner, { id: PARTNER_ID });
  app = await startEchoApp();
  const files = await writeServingFiles(dir.path, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  fedFile = join(dir.path, 'partner.org.pem');
  await writeFile(fedFile, partner.certPem);
  sidecar = await startTestSidecar({
    upstream: app.url,
    'mtls-cert-file': files.certFile,
    'mtls-key-file': files.keyFile,
    'mtls-ca-file': files.caFile,
    'federated-bundle': [`partner.org=${fedFile}`],
    allow: [CLIENT_ID, PARTNER_ID, 'spiffe://partner.org/**'],
  });
});
afterAll(async () => {
  await sidecar.close();
  await app.close();
  await dir.remove();
});

/**
 * Reloads now and expects the files on disk to be in force. The directory watch may have applied them
 * already (outcome `unchanged`), so only a failure counts against it.
 */
async function settle() {
  const result = await sidecar.identity.reload('test');
  expect(result.error?.message).toBeUndefined();
  expect(result.outcome).not.toBe('failed');
}

async function rotateOwn(): Promise<IssuedCertificate> {
  const next = await issueSvid(ca, { id: SERVER_ID });
  await writeFile(join(dir.path, 'tls.crt'), next.chainPem);
  await writeFile(join(dir.path, 'tls.key'), next.keyPem);
  return next;
}

describe('federated bundles reload per trust domain and never block our rotation', () => {
  it('a CA added to the federated bundle is trusted for new connections', async () => {
    expect((await requestVia(sidecar.port, billing)).status).toBe(200);
    const partner2 = await createDevCa({ trustDomain: 'partner.org' });
    const billing2 = await issueSvid(partner2, { id: PARTNER_ID });
    await expectRejected(sidecar.port, billing2);
    await writeFile(fedFile, partner.certPem + partner2.certPem);
    await settle();
    expect((await requestVia(sidecar.port, billing2)).status).toBe(200);
    await writeFile(fedFile, partner.certPem);
    await settle();
    await expectRejected(sidecar.port, billing2);
  });

  it('a deleted federated bundle drops that trust domain but our own rotation goes on', async () => {
    await rm(fedFile);
    const next = await rotateOwn();
    await settle();
    expect(await servedSerial(sidecar.port, client)).toBe(normalizeSerial(next.serialNumber));
    expect([...sidecar.identity.current().bundles.keys()]).toEqual(['example.org']);
    expect(sidecar.logs.some((l) => l.event === 'federated_bundle_dropped' && l.trust_domain === 'partner.org')).toBe(
      true,
    );
    await expectRejected(sidecar.port, billing);
    expect((await requestVia(sidecar.port, client)).status).toBe(200);
  });

  it('an empty federated bundle file is an empty bundle: that trust domain is refused', async () => {
    await writeFile(fedFile, '');
    await settle();
    expect(sidecar.identity.current().bundles.get('partner.org')?.authorities).toEqual([]);
    await expectRejected(sidecar.port, billing);
  });

  it('restoring the file trusts the domain again', async () => {
    await writeFile(fedFile, partner.certPem);
    await settle();
    expect((await requestVia(sidecar.port, billing)).status).toBe(200);
  });

  it('an identity file that is a FIFO or too large fails fast and keeps the last good identity', async () => {
    const certFile = join(dir.path, 'tls.crt');
    const before = sidecar.identity.current().svid.chain[0].serialNumber;
    await rm(certFile);
    execFileSync('mkfifo', [certFile]);
    const fifo = await sidecar.identity.reload('test');
    expect(fifo.outcome).toBe('failed');
    expect(fifo.error?.message).toContain('not a regular file');
    await rm(certFile);
    await writeFile(certFile, 'x'.repeat(1024 * 1024 + 1));
    const large = await sidecar.identity.reload('test');
    expect(large.error?.message).toContain('larger than');
    expect(sidecar.identity.current().svid.chain[0].serialNumber).toBe(before);
    await rotateOwn();
    await settle();
  });

  it('an intermediate of our chain that expires before the leaf makes us not ready when it does', async () => {
    const shortIntermediate = await issueIntermediateCa(ca, { notAfter: new Date(Date.now() + 2500) });
    const next = await issueSvid(shortIntermediate, { id: SERVER_ID });
    await writeFile(join(dir.path, 'tls.crt'), next.chainPem);
    await writeFile(join(dir.path, 'tls.key'), next.keyPem);
    await settle();
    expect(sidecar.identity.status()).toEqual({ ready: true });
    await expect
      .poll(() => sidecar.identity.status(), { timeout: 5000 })
      .toEqual({ ready: false, reason: 'svid_expired' });
    await rotateOwn();
    await settle();
    expect(sidecar.identity.status()).toEqual({ ready: true });
  });
});
