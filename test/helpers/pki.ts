// Test PKI: real certificates made at test time by the dev CA, including the invalid ones a test needs, and
// the files and file-mode options that serve them.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CertificateAuthority,
  createDevCa,
  type IssuedCertificate,
  type issueCertificate,
  issueSvid,
} from '../../src/certs/dev-ca.js';
import { x509 } from '../../src/spiffe/x509-library.js';

export const KU = x509.KeyUsageFlags;
export const HOUR = 3_600_000;

export async function tempDir(prefix = 'spiffe-sidecar-test-'): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface ServingFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** Writes an SVID and a bundle where file mode reads them. */
export async function writeServingFiles(
  dir: string,
  svid: IssuedCertificate,
  bundlePem: string,
): Promise<ServingFiles> {
  const files = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), caFile: join(dir, 'ca.crt') };
  await writeFile(files.certFile, svid.chainPem);
  await writeFile(files.keyFile, svid.keyPem);
  await writeFile(files.caFile, bundlePem);
  return files;
}

/** The file-mode options that serve `files`: --mtls-cert-file, --mtls-key-file and --mtls-ca-file. */
export function mtlsFileOptions(files: ServingFiles) {
  return { 'mtls-cert-file': files.certFile, 'mtls-key-file': files.keyFile, 'mtls-ca-file': files.caFile };
}

/** An SVID of `ca` for `id` and its bundle, written into `dir` (made if need be). */
export async function servingFiles(dir: string, ca: CertificateAuthority, id: string): Promise<ServingFiles> {
  await mkdir(dir, { recursive: true });
  return writeServingFiles(dir, await issueSvid(ca, { id }), ca.certPem);
}

/** The same, as the options that serve them. */
export async function servingOptions(dir: string, ca: CertificateAuthority, id: string) {
  return mtlsFileOptions(await servingFiles(dir, ca, id));
}

/** A leaf that is a valid SVID in every respect but those the template overrides. */
export function svidWith(
  ca: CertificateAuthority,
  id: string,
  template: Parameters<typeof issueCertificate>[1],
): Promise<IssuedCertificate> {
  return issueSvid(ca, { id, template });
}

export { createDevCa, issueSvid };
