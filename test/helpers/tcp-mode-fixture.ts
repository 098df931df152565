// Shared setup for the `--protocol tcp` e2e files: a dev CA with allowed, denied, federated and foreign
// callers, a TCP app and a tcp-mode sidecar in front of it, and what a refused caller sees. A file calls
// `useTcpModeFixture()` once; nothing here asserts, so a failure always points at the test file.
import { writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import type { RawOptions } from '../../src/config.js';
import type { ClientCert } from './client.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from './pki.js';
import { startTestSidecar, type TestSidecar } from './sidecar.js';
import { closed, startTcpApp, type TcpApp } from './tcp-echo-app.js';

export const SERVER_ID = 'spiffe://example.org/ns/db/sa/postgres';
export const ALLOWED_ID = 'spiffe://example.org/ns/shop/sa/orders';
export const DENIED_ID = 'spiffe://example.org/ns/shop/sa/stranger';
export const PARTNER_ID = 'spiffe://partner.org/ns/shop/sa/orders';
export const MB = 1024 * 1024;

export interface TcpModeFixture {
  dir: { path: string; remove: () => Promise<void> };
  ca: CertificateAuthority;
  files: ServingFiles & { partnerBundleFile: string };
  allowed: IssuedCertificate;
  /** Our trust domain, an ID no rule allows. */
  denied: IssuedCertificate;
  /** partner.org: a federated trust domain no rule names. */
  partner: IssuedCertificate;
  /** elsewhere.org: a trust domain we do not trust at all. */
  foreign: IssuedCertificate;
  app: TcpApp;
  /** A tcp-mode sidecar in front of `app`, allowing ALLOWED_ID. */
  sidecar: TestSidecar;
  /** Another tcp-mode sidecar with the same identity and allow rule, closed after the file. */
  tcpSidecar(upstream: string, extra?: RawOptions): Promise<TestSidecar>;
  /** Runs after the file, before the fixture's own teardown (last registered first). */
  onCleanup(cleanup: () => Promise<void>): void;
}

/**
 * Registers the file's beforeAll/afterAll; the returned function gives the fixture once they ran.
 * `appHandler` serves the app's connections (an echo by default).
 */
export function useTcpModeFixture(appHandler?: (socket: Socket) => void): () => TcpModeFixture {
  let fixture: TcpModeFixture | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    const dir = await tempDir();
    cleanups.push(() => dir.remove());
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const partnerCa = await createDevCa({ trustDomain: 'partner.org' });
    const strangerCa = await createDevCa({ trustDomain: 'elsewhere.org' });
    const serving = await writeServingFiles(dir.path, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
    const partnerBundleFile = join(dir.path, 'partner.org.pem');
    await writeFile(partnerBundleFile, partnerCa.certPem);
    const files = { ...serving, partnerBundleFile };
    const [allowed, denied, partner, foreign] = await Promise.all([
      issueSvid(ca, { id: ALLOWED_ID }),
      issueSvid(ca, { id: DENIED_ID }),
      issueSvid(partnerCa, { id: PARTNER_ID }),
      issueSvid(strangerCa, { id: 'spiffe://elsewhere.org/ns/shop/sa/orders' }),
    ]);
    const tcpSidecar = async (upstream: string, extra: RawOptions = {}) => {
      const started = await startTestSidecar({
        protocol: 'tcp',
        upstream,
        'mtls-cert-file': files.certFile,
        'mtls-key-file': files.keyFile,
        'mtls-ca-file': files.caFile,
        'federated-bundle': [`partner.org=${files.partnerBundleFile}`],
        allow: [ALLOWED_ID],
        ...extra,
      });
      cleanups.push(() => started.close());
      return started;
    };
    const app = await startTcpApp(appHandler);
    cleanups.push(() => app.close());
    const sidecar = await tcpSidecar(app.upstream);
    const onCleanup = (cleanup: () => Promise<void>) => void cleanups.push(cleanup);
    fixture = { dir, ca, files, allowed, denied, partner, foreign, app, sidecar, tcpSidecar, onCleanup };
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  return () => {
    if (!fixture) throw new Error('useTcpModeFixture: used before its beforeAll ran');
    return fixture;
  };
}

/** What a caller sees of a connection the sidecar refuses: whether it handshook, and any byte that came back. */
export async function attempt(port: number, cert: ClientCert | undefined) {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    cert: cert?.chainPem,
    key: cert?.keyPem,
    rejectUnauthorized: false,
  });
  let handshook = false;
  let bytes = 0;
  socket.on('secureConnect', () => {
    handshook = true;
    socket.write('SELECT secret FROM vault;\n');
  });
  socket.on('data', (d: Buffer) => (bytes += d.length));
  socket.on('error', () => {});
  // An upper bound, not a wait: a refused connection closes long before.
  const stayedOpen = await Promise.race([
    closed(socket).then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 5000)),
  ]);
  socket.destroy();
  return { handshook, bytes, stayedOpen };
}
