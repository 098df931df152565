// File-mode reloads: every trigger (directory watch, kubelet's ..data swap, SIGHUP, interval) leads to
// validate-then-swap; every broken update keeps the last good identity and logs why.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { requestVia } from '../helpers/client.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { createDevCa, HOUR, issueSvid, svidWith, tempDir } from '../helpers/pki.js';
import { startCli, waitForEvent } from '../helpers/process.js';
import { writeSecretVolume } from '../helpers/secret-volume.js';
import { normalizeSerial, servedSerial } from '../helpers/server-serial.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const SERVER_ID = 'spiffe://example.org/server';
const CLIENT_ID = 'spiffe://example.org/client';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let client: IssuedCertificate;
let app: EchoApp;

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  client = await issueSvid(ca, { id: CLIENT_ID });
  app = await startEchoApp();
});
afterAll(async () => {
  await app.close();
  await dir.remove();
});

function flags(certDir: string, extra: Record<string, unknown> = {}) {
  return {
    upstream: app.url,
    'mtls-cert-file': join(certDir, 'tls.crt'),
    'mtls-key-file': join(certDir, 'tls.key'),
    'mtls-ca-file': join(certDir, 'ca.crt'),
    allow: [CLIENT_ID],
    ...extra,
  };
}

/** Waits for the next reload log line after `from` that matches. */
async function nextReload(sidecar: TestSidecar, from: number, match: Record<string, unknown>) {
  let found: Record<string, unknown> | undefined;
  await expect
    .poll(() => (found = sidecar.logs.slice(from).find((l) => Object.entries(match).every(([k, v]) => l[k] === v))), {
      timeout: 5000,
    })
    .toBeDefined();
  return found!;
}

describe('a reload swaps in only a valid identity and keeps the last good one', () => {
  let plainDir: string;
  let sidecar: TestSidecar;
  let current: IssuedCertificate;

  beforeAll(async () => {
    plainDir = join(dir.path, 'plain');
    current = await issueSvid(ca, { id: SERVER_ID });
    await writePlainFiles(plainDir, current);
    sidecar = await startTestSidecar(flags(plainDir));
  });
  afterAll(() => sidecar.close());

  /** Plain files rewritten in place, the way a helper like spiffe-helper writes them. */
  async function writePlainFiles(target: string, svid: IssuedCertificate) {
    await mkdir(target, { recursive: true });
    await writeFile(join(target, 'tls.crt'), svid.chainPem);
    await writeFile(join(target, 'tls.key'), svid.keyPem);
    await writeFile(join(target, 'ca.crt'), ca.certPem);
  }

  /**
   * A broken update must be refused with this reason while the old identity keeps serving. The watch
   * reacts on its own; an explicit reload after the writes makes the verdict independent of timing.
   */
  async function expectKept(reason: string, message?: RegExp) {
    const result = await sidecar.identity.reload('test');
    expect(result.outcome).toBe('failed');
    expect(result.error?.code).toBe(reason);
    if (message) expect(result.error?.message).toMatch(message);
    expect(
      sidecar.logs.some((l) => l.event === 'reload_failed' && l.reason === reason && l.serial === current.serialNumber),
    ).toBe(true);
    expect(normalizeSerial(sidecar.identity.current().svid.chain[0].serialNumber)).toBe(
      normalizeSerial(current.serialNumber),
    );
    expect(await servedSerial(sidecar.port, client)).toBe(normalizeSerial(current.serialNumber));
    expect((await requestVia(sidecar.port, client)).status).toBe(200);
    sidecar.logs.length = 0;
  }

  /** Writes a good pair and waits until it serves. */
  async function rotateTo(svid: IssuedCertificate) {
    sidecar.logs.length = 0;
    await writePlainFiles(plainDir, svid);
    const updated = await nextReload(sidecar, 0, { event: 'identity_updated', serial: svid.serialNumber });
    expect(updated.trigger).toBe('watch');
    current = svid;
    expect(await servedSerial(sidecar.port, client)).toBe(normalizeSerial(svid.serialNumber));
    sidecar.logs.length = 0;
  }

  it('an in-place rewrite of a valid pair is picked up by the directory watch', async () => {
    await rotateTo(await issueSvid(ca, { id: SERVER_ID }));
    expect(sidecar.identity.reloads.updated).toBeGreaterThanOrEqual(1);
  });

  it('cert written before key: the transient mismatch is refused, the completed pair applied', async () => {
    const next = await issueSvid(ca, { id: SERVER_ID });
    await writeFile(join(plainDir, 'tls.crt'), next.chainPem);
    await expectKept('ERR_KEY_MISMATCH');
    await writeFile(join(plainDir, 'tls.key'), next.keyPem);
    await nextReload(sidecar, 0, { event: 'identity_updated', serial: next.serialNumber });
    current = next;
    expect(await servedSerial(sidecar.port, client)).toBe(normalizeSerial(next.serialNumber));
  });

  it('a truncated PEM', async () => {
    await writeFile(join(plainDir, 'tls.crt'), current.chainPem.slice(0, 200));
    await expectKept('ERR_CERT_PARSE');
    await writePlainFiles(plainDir, current);
  });

  it('a CA file cut short in its second root (read while being written in place)', async () => {
    const next = await createDevCa({ trustDomain: 'example.org' });
    await writeFile(join(plainDir, 'ca.crt'), ca.certPem + next.certPem.slice(0, 120));
    await expectKept('ERR_CERT_PARSE', /no END line/);
    await writePlainFiles(plainDir, current);
  });

  it('the key of another certificate', async () => {
    const other = await issueSvid(ca, { id: SERVER_ID });
    await writeFile(join(plainDir, 'tls.key'), other.keyPem);
    await expectKept('ERR_KEY_MISMATCH');
    await writePlainFiles(plainDir, current);
  });

  it('an expired new certificate', async () => {
    const expired = await svidWith(ca, SERVER_ID, {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    await writePlainFiles(plainDir, expired);
    await expectKept('ERR_OWN_SVID_INVALID');
    await writePlainFiles(plainDir, current);
  });

  it('a certificate of another trust domain (with a matching CA file)', async () => {
    const otherCa = await createDevCa({ trustDomain: 'other.org' });
    const foreign = await issueSvid(otherCa, { id: 'spiffe://other.org/server' });
    await writeFile(join(plainDir, 'ca.crt'), otherCa.certPem);
    await writeFile(join(plainDir, 'tls.key'), foreign.keyPem);
    await writeFile(join(plainDir, 'tls.crt'), foreign.chainPem);
    await expectKept('ERR_OWN_SVID_INVALID', /is not ours/);
    expect(sidecar.identity.current().svid.id.toString()).toBe(SERVER_ID);
    await writePlainFiles(plainDir, current);
  });

  it('a certificate OpenSSL refuses (an RSA-512 key): refused before the swap, nothing crashes', async () => {
    const { webcrypto } = await import('node:crypto');
    const weakKeys = (await webcrypto.subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 512, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    )) as CryptoKeyPair;
    const weak = await svidWith(ca, SERVER_ID, { keys: weakKeys });
    await writePlainFiles(plainDir, weak);
    await expectKept('ERR_OWN_SVID_INVALID', /OpenSSL refuses it/);
    await writePlainFiles(plainDir, current);
  });

  it('a removed file', async () => {
    await rm(join(plainDir, 'tls.key'));
    await expectKept('ERR_FILE_READ');
    await writePlainFiles(plainDir, current);
  });

  it('still rotates after all those failures', async () => {
    await rotateTo(await issueSvid(ca, { id: SERVER_ID }));
  });
});

describe('triggers', () => {
  it("kubelet's ..data symlink swap of a Secret volume", async () => {
    const volume = join(dir.path, 'volume');
    const first = await issueSvid(ca, { id: SERVER_ID });
    await writeSecretVolume(volume, { 'tls.crt': first.chainPem, 'tls.key': first.keyPem, 'ca.crt': ca.certPem });
    const sidecar = await startTestSidecar(flags(volume));
    try {
      expect(await servedSerial(sidecar.port, client)).toBe(normalizeSerial(first.serialNumber));
      for (let i = 0; i < 3; i++) {
        const next = await issueSvid(ca, { id: SERVER_ID });
        await writeSecretVolume(volume, { 'tls.crt': next.chainPem, 'tls.key': next.keyPem, 'ca.crt': ca.certPem });
        await nextReload(sidecar, 0, { event: 'identity_updated', serial: next.serialNumber });
        expect(await servedSerial(sidecar.port, client)).toBe(normalizeSerial(next.serialNumber));
      }
    } finally {
      await sidecar.close();
    }
  });

  it('--reload-interval polls when watching is off', async () => {
    const polled = join(dir.path, 'polled');
    const first = await issueSvid(ca, { id: SERVER_ID });
    await writeSecretVolume(polled, { 'tls.crt': first.chainPem, 'tls.key': first.keyPem, 'ca.crt': ca.certPem });
    const sidecar = await startTestSidecar(flags(polled, { watch: false, 'reload-interval': '1s' }));
    try {
      const next = await issueSvid(ca, { id: SERVER_ID });
      await writeSecretVolume(polled, { 'tls.crt': next.chainPem, 'tls.key': next.keyPem, 'ca.crt': ca.certPem });
      const updated = await nextReload(sidecar, 0, { event: 'identity_updated', serial: next.serialNumber });
      expect(updated.trigger).toBe('interval');
    } finally {
      await sidecar.close();
    }
  });

  it('SIGHUP reloads the real process (watching off)', async () => {
    const hup = join(dir.path, 'hup');
    const first = await issueSvid(ca, { id: SERVER_ID });
    await writeSecretVolume(hup, { 'tls.crt': first.chainPem, 'tls.key': first.keyPem, 'ca.crt': ca.certPem });
    const f = flags(hup);
    const running = startCli([
      '--listen',
      '127.0.0.1:0',
      '--upstream',
      f.upstream,
      '--mtls-cert-file',
      f['mtls-cert-file'],
      '--mtls-key-file',
      f['mtls-key-file'],
      '--mtls-ca-file',
      f['mtls-ca-file'],
      '--allow',
      CLIENT_ID,
      '--no-watch',
    ]);
    // A control that does watch the same volume: once it has applied the swap, a watch would have.
    const watching = await startTestSidecar(flags(hup));
    try {
      const started = await waitForEvent(running, 'started');
      const port = (started.listen as { port: number }).port;
      const next = await issueSvid(ca, { id: SERVER_ID });
      await writeSecretVolume(hup, { 'tls.crt': next.chainPem, 'tls.key': next.keyPem, 'ca.crt': ca.certPem });
      await nextReload(watching, 0, { event: 'identity_updated', trigger: 'watch', serial: next.serialNumber });
      expect(await servedSerial(port, client)).toBe(normalizeSerial(first.serialNumber));
      expect(running.stdout()).not.toContain('"event":"identity_updated"');
      running.child.kill('SIGHUP');
      const updated = await waitForEvent(running, 'identity_updated');
      expect(updated).toMatchObject({ trigger: 'SIGHUP', serial: next.serialNumber });
      expect(await servedSerial(port, client)).toBe(normalizeSerial(next.serialNumber));
      expect((await requestVia(port, client)).status).toBe(200);
    } finally {
      await watching.close();
      running.child.kill('SIGTERM');
      expect((await running.exited).code).toBe(0);
    }
  });
});

describe('our SVID expiring with no valid replacement', () => {
  it('keeps serving until expiry, then reports not ready; a fresh SVID makes it ready again', async () => {
    const expiring = join(dir.path, 'expiring');
    const shortLived = await issueSvid(ca, { id: SERVER_ID, lifetimeMs: 2500 });
    await writeSecretVolume(expiring, {
      'tls.crt': shortLived.chainPem,
      'tls.key': shortLived.keyPem,
      'ca.crt': ca.certPem,
    });
    const sidecar = await startTestSidecar(flags(expiring));
    try {
      expect(sidecar.identity.status()).toEqual({ ready: true });
      await nextReload(sidecar, 0, { event: 'svid_expired', serial: shortLived.serialNumber });
      expect(sidecar.identity.status()).toEqual({ ready: false, reason: 'svid_expired' });
      const fresh = await issueSvid(ca, { id: SERVER_ID });
      await writeSecretVolume(expiring, { 'tls.crt': fresh.chainPem, 'tls.key': fresh.keyPem, 'ca.crt': ca.certPem });
      await nextReload(sidecar, 0, { event: 'identity_updated', serial: fresh.serialNumber });
      expect(sidecar.identity.status()).toEqual({ ready: true });
      expect((await requestVia(sidecar.port, client)).status).toBe(200);
    } finally {
      await sidecar.close();
    }
  });
});
