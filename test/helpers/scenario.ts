// One end-to-end setup: trust domain example.org (ours) federated with partner.org, the sidecar serving
// spiffe://example.org/server in front of the echo app, and callers with real SVIDs.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import type { RawOptions } from '../../src/config.js';
import { type EchoApp, startEchoApp } from './echo-app.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from './pki.js';
import { startTestSidecar, type TestSidecar } from './sidecar.js';

export interface Scenario {
  caA: CertificateAuthority;
  caB: CertificateAuthority;
  dir: string;
  files: ServingFiles & { partnerBundleFile: string };
  allowed: IssuedCertificate;
  denied: IssuedCertificate;
  app: EchoApp;
  sidecar: TestSidecar;
  close(): Promise<void>;
}

export const ALLOWED_ID = 'spiffe://example.org/ns/prod/sa/client';
export const DENIED_ID = 'spiffe://example.org/ns/prod/sa/stranger';
export const SERVER_ID = 'spiffe://example.org/ns/prod/sa/server';

export async function startScenario(options: RawOptions = {}): Promise<Scenario> {
  const caA = await createDevCa({ trustDomain: 'example.org' });
  const caB = await createDevCa({ trustDomain: 'partner.org' });
  const temp = await tempDir();
  const server = await issueSvid(caA, { id: SERVER_ID });
  const files = await writeServingFiles(temp.path, server, caA.certPem);
  const partnerBundleFile = join(temp.path, 'partner.org.pem');
  await writeFile(partnerBundleFile, caB.certPem);
  const [allowed, denied] = await Promise.all([issueSvid(caA, { id: ALLOWED_ID }), issueSvid(caA, { id: DENIED_ID })]);
  const app = await startEchoApp();
  const sidecar = await startTestSidecar({
    upstream: app.url,
    'mtls-cert-file': files.certFile,
    'mtls-key-file': files.keyFile,
    'mtls-ca-file': files.caFile,
    'federated-bundle': [`partner.org=${partnerBundleFile}`],
    allow: [ALLOWED_ID, 'spiffe://partner.org/billing/*'],
    ...options,
  });
  return {
    caA,
    caB,
    dir: temp.path,
    files: { ...files, partnerBundleFile },
    allowed,
    denied,
    app,
    sidecar,
    async close() {
      await sidecar.close();
      await app.close();
      await temp.remove();
    },
  };
}
