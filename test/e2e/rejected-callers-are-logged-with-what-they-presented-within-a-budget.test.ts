// Rejection lines that an operator can act on, and that a misbehaving client cannot multiply: a rejected
// peer's line names the SPIFFE ID its certificate claimed (unverified) with the certificate's serial and
// hash; a caller that refuses OUR certificate (curl, openssl s_client) is a warning naming the TLS alert and
// what to check; and a flood of rejected connections gives at most the budget of lines, the rest counted on
// a later line's `suppressed`. Real TLS on loopback, certificates made here, no fixed sleeps.
import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { REJECTION_LINES_BURST, REJECTION_LINES_PER_SECOND } from '../../src/proxy/rejection-log.js';
import { waitForLog } from '../helpers/authz.js';
import { expectRejected, requestVia } from '../helpers/client.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { createDevCa, issueSvid, type ServingFiles, svidWith, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const SERVER_ID = 'spiffe://example.org/ns/shop/sa/orders';
const CLIENT_ID = 'spiffe://example.org/ns/shop/sa/frontend';
const IMPOSTOR_ID = 'spiffe://example.org/ns/shop/sa/admin';

let dir: string;
let removeTemp: () => Promise<void>;
let app: EchoApp;
let serving: ServingFiles;
let rogueCa: CertificateAuthority;
let client: IssuedCertificate;
let impostor: IssuedCertificate;
let sidecar: TestSidecar;

function start(): Promise<TestSidecar> {
  return startTestSidecar({
    upstream: app.url,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
    allow: [CLIENT_ID],
  });
}

beforeAll(async () => {
  const temp = await tempDir();
  dir = temp.path;
  removeTemp = temp.remove;
  app = await startEchoApp();
  const ca = await createDevCa({ trustDomain: 'example.org' });
  // Another CA that calls itself example.org: what it signs claims our trust domain and is trusted by no one.
  rogueCa = await createDevCa({ trustDomain: 'example.org' });
  serving = await writeServingFiles(dir, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  client = await issueSvid(ca, { id: CLIENT_ID });
  impostor = await issueSvid(rogueCa, { id: IMPOSTOR_ID });
  await writeFile(join(dir, 'client.crt'), client.chainPem);
  await writeFile(join(dir, 'client.key'), client.keyPem);
  await writeFile(join(dir, 'rogue-ca.pem'), rogueCa.certPem);
  sidecar = await start();
});

afterAll(async () => {
  await sidecar?.close();
  await app?.close();
  await removeTemp?.();
});

/** Runs a command to its end: its exit code. */
function run(command: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin?.end();
    child.on('exit', resolve);
  });
}

describe('a rejected peer is logged with what it presented', () => {
  it('a certificate of an untrusted CA: the SPIFFE ID it claims (unverified), its serial and hash', async () => {
    const from = sidecar.logs.length;
    const seen = app.seen.length;
    await expectRejected(sidecar.port, impostor);
    const line = await waitForLog(sidecar.logs, { event: 'peer_rejected' }, from);
    const der = new X509Certificate(impostor.certPem).raw;
    expect(line).toMatchObject({
      level: 'warn',
      reason: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      remote: '127.0.0.1',
      presented_id: IMPOSTOR_ID,
      serial: impostor.serialNumber,
      fingerprint_sha256: createHash('sha256').update(der).digest('hex'),
    });
    expect(line).not.toHaveProperty('suppressed');
    expect(app.seen.length).toBe(seen);
  });

  it('a URI SAN that is not a SPIFFE ID is not repeated, only the serial and hash', async () => {
    const notSpiffe = await svidWith(rogueCa, IMPOSTOR_ID, { uris: ['https://example.org/admin'] });
    const from = sidecar.logs.length;
    await expectRejected(sidecar.port, notSpiffe);
    const line = await waitForLog(sidecar.logs, { event: 'peer_rejected' }, from);
    expect(line).toMatchObject({ serial: notSpiffe.serialNumber });
    expect(line).not.toHaveProperty('presented_id');
  });

  it('no certificate at all: nothing presented, nothing claimed', async () => {
    const from = sidecar.logs.length;
    await expectRejected(sidecar.port, undefined);
    const line = await waitForLog(sidecar.logs, { event: 'peer_rejected', reason: 'ERR_NO_CLIENT_CERT' }, from);
    expect(line).not.toHaveProperty('presented_id');
    expect(line).not.toHaveProperty('serial');
  });
});

describe('a caller that refuses our certificate', () => {
  it('curl without our CA: a warning, caller_refused_our_certificate, alert unknown_ca, and what to check', async () => {
    const from = sidecar.logs.length;
    const code = await run('curl', [
      '-s',
      '-o',
      '/dev/null',
      '--cacert',
      join(dir, 'rogue-ca.pem'),
      '--cert',
      join(dir, 'client.crt'),
      '--key',
      join(dir, 'client.key'),
      `https://127.0.0.1:${sidecar.port}/`,
    ]);
    // 60: the peer certificate cannot be authenticated with the CA certificates given.
    expect(code).toBe(60);
    const line = await waitForLog(sidecar.logs, { event: 'tls_rejected' }, from);
    expect(line).toMatchObject({
      level: 'warn',
      reason: 'caller_refused_our_certificate',
      alert: 'unknown_ca',
      remote: '127.0.0.1',
    });
    expect(line.msg).toContain("does it have our trust domain's bundle");
    expect(line.msg).toContain(SERVER_ID);
    expect(line.msg).toContain('trust domain example.org');
    // OpenSSL's own words are kept apart, for whoever needs them.
    expect(line.error).toMatch(/alert unknown ca/);
  });

  it.each(['-tls1_2', '-tls1_3'])('openssl s_client %s without our CA: the same warning', async (version) => {
    const from = sidecar.logs.length;
    const code = await run('openssl', [
      's_client',
      version,
      '-connect',
      `127.0.0.1:${sidecar.port}`,
      '-verify_return_error',
      '-CAfile',
      join(dir, 'rogue-ca.pem'),
    ]);
    expect(code).not.toBe(0);
    const line = await waitForLog(sidecar.logs, { event: 'tls_rejected' }, from);
    expect(line).toMatchObject({ level: 'warn', reason: 'caller_refused_our_certificate', alert: 'unknown_ca' });
  });

  it('a client that is not speaking TLS: an info line with a stable reason, the raw error kept', async () => {
    const from = sidecar.logs.length;
    const code = await run('curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${sidecar.port}/`]);
    expect(code).not.toBe(0);
    const line = await waitForLog(sidecar.logs, { event: 'tls_rejected' }, from);
    expect(line).toMatchObject({ level: 'info', reason: 'plain_http_request' });
    expect(line).not.toHaveProperty('alert');
    expect(line.error).toMatch(/http request/);
  });
});

describe('rejection lines are rate limited', () => {
  it(`a flood of rejected connections: at most ${REJECTION_LINES_BURST} and ${REJECTION_LINES_PER_SECOND}/s, the rest counted on a later line`, async () => {
    // A sidecar of its own: the budget is per sidecar, and this test spends it.
    const flooded = await start();
    try {
      const lines = () => flooded.logs.filter((l) => l.event === 'peer_rejected');
      const attempts = 150;
      const started = performance.now();
      let sent = 0;
      // Ten clients at a time, each reconnecting as soon as it is refused: the misbehaving client of the issue.
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          while (sent < attempts) {
            sent++;
            await expectRejected(flooded.port, impostor);
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      // Every refusal was judged (and its line written or dropped) before its connection closed.
      const during = lines().length;
      expect(during).toBeGreaterThanOrEqual(REJECTION_LINES_BURST);
      expect(during).toBeLessThanOrEqual(REJECTION_LINES_BURST + Math.ceil(seconds * REJECTION_LINES_PER_SECOND) + 1);
      expect(during).toBeLessThan(attempts);

      // Later, one refusal at a time, until one passes: it carries the count of those dropped before it (at
      // 10 lines a second, one passes within a tenth of a second; the loop is bounded all the same).
      let total = attempts;
      const reported = () => lines().filter((l) => typeof l.suppressed === 'number');
      const before = reported().length;
      while (reported().length === before && total < attempts + 1000) {
        total++;
        await expectRejected(flooded.port, impostor);
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(reported().length).toBe(before + 1);
      expect(reported().at(-1)?.suppressed).toBeGreaterThan(0);
      // Nothing lost: each attempt is a line, or counted in the `suppressed` of a later one.
      await expect
        .poll(() => lines().length + lines().reduce((n, l) => n + ((l.suppressed as number | undefined) ?? 0), 0))
        .toBe(total);
      // The lines that passed are whole: the same fields as any other.
      expect(reported().at(-1)).toMatchObject({ presented_id: IMPOSTOR_ID, remote: '127.0.0.1' });
      // A good caller is not affected.
      expect((await requestVia(flooded.port, client)).status).toBe(200);
    } finally {
      await flooded.close();
    }
  });
});
