// A differential table: `spiffe-interop make-certs` writes edge-case certificates with Go's crypto/x509 (good
// SVIDs, and ones the X509-SVID and SPIFFE-ID specs or RFC 5280 rule out), go-spiffe's x509svid.Verify judges
// each, and so does our real verifier: a file-mode `spiffe-sidecar run` that each case is presented to as the
// client certificate of a real TLS connection (OpenSSL's check, then ours; the log line names our reason).
//
// What must hold: every case go-spiffe rejects, we reject; every good case both accept, with the same ID; every
// case the specs rule out, we reject. Where go-spiffe and we differ, the table below says who the spec sides with.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../../helpers/echo-app.js';
import { type Running, startCli, waitForEvent } from '../../helpers/process.js';
import { tempDir } from '../../helpers/pki.js';
import { bundleArgs, type Echoed, runInterop, stopSidecar, type X509Result } from './harness.js';
import { waitForLine } from '../../helpers/process.js';

type Outcome = 'accept' | 'reject';

interface Case {
  name: string;
  uris: string[] | null;
  expect: Outcome | 'either';
  spec: string;
  why: string;
  chain: string;
  key: string;
}

interface Manifest {
  bundles: Record<string, string>;
  server: { id: string; cert: string; key: string };
  cases: Case[];
}

/**
 * The cases where go-spiffe's x509svid.Verify and the specs (or we) part ways; every other case, go-spiffe,
 * we and the manifest's `expect` agree. `go` is x509svid.Verify's verdict (what a go-spiffe peer does with
 * the chain it is presented), `ours` our sidecar's, `spec` who the specs side with.
 */
const DIFFERENCES: Record<string, { go: Outcome; ours: Outcome; spec: string }> = {
  'bad-id-without-path': {
    go: 'accept',
    ours: 'reject',
    spec: 'us: X509-SVID §5.2 says a validator MUST ensure a non-root path; x509svid.Verify omits it (Parse checks it)',
  },
  'bad-leaf-without-digitalsignature': {
    go: 'accept',
    ours: 'reject',
    spec: 'us: X509-SVID §4.3 (leaf MUST set digitalSignature) and RFC 8446 §4.4.2.2 (a signing key needs it); Verify ignores it (Parse checks it)',
  },
  'bad-leaf-eku-server-auth-only': {
    go: 'accept',
    ours: 'reject',
    spec: 'us: X509-SVID §4.4 and RFC 5280 §4.2.1.12: a serverAuth-only certificate is not a client certificate; Verify passes ExtKeyUsageAny',
  },
  'either-id-uppercase-scheme': {
    go: 'accept',
    ours: 'reject',
    spec: 'either: SPIFFE-ID §2.4 calls the scheme case-insensitive, §2 and X509-SVID §5.2 want "spiffe"; go-spiffe accepts only because net/url lowercases the scheme (its own spiffeid.FromString refuses "SPIFFE://"); we refuse, as our parser does everywhere',
  },
  'either-id-longer-than-2048-bytes': {
    go: 'accept',
    ours: 'reject',
    spec: 'either: SPIFFE-ID §2.3 requires support up to 2048 bytes and sets no maximum; we refuse longer (a DoS bound)',
  },
  'either-leaf-without-key-usage': {
    go: 'accept',
    ours: 'accept',
    spec: 'either: X509-SVID §4.3 binds the issuer, §5.2 does not ask validators; RFC 5280 reads no extension as no restriction (Parse refuses it)',
  },
  'either-leaf-key-usage-not-critical': {
    go: 'accept',
    ours: 'accept',
    spec: 'either: "MUST be marked critical" (X509-SVID §4.3) binds the issuer',
  },
  'either-leaf-eku-client-auth-only': {
    go: 'accept',
    ours: 'reject',
    spec: 'either: X509-SVID §4.4 says both serverAuth and clientAuth MUST be set when the extension is present (an issuer rule we also enforce on peers)',
  },
};

interface Ours {
  outcome: Outcome;
  /** The SPIFFE ID the app received (accepted), or our reason (rejected). */
  id?: string;
  reason?: string;
}

interface Row {
  c: Case;
  go: X509Result;
  ours: Ours;
}

// The cases are made before the tests are collected, so that each gets its own test.
const dir = await tempDir();
await runInterop(['make-certs', '-out', dir.path]);
const manifest = JSON.parse(await readFile(join(dir.path, 'manifest.json'), 'utf8')) as Manifest;

let app: EchoApp;
let sidecar: Running;
let port: number;
const rows = new Map<string, Row>();

const file = (rel: string) => join(dir.path, rel);

/** The leaf's DER SHA-256, as the sidecar logs it (`fingerprint_sha256`). */
function leafFingerprint(chainPem: string): string {
  const body = /-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/.exec(chainPem)![1];
  return createHash('sha256')
    .update(Buffer.from(body.replace(/\s+/g, ''), 'base64'))
    .digest('hex');
}

/**
 * Presents the case as our sidecar's client, from its own loopback address (so that each rejection has its log
 * line: the rejection lines are budgeted per remote address).
 */
async function presentToSidecar(c: Case, index: number): Promise<Ours> {
  const [chainPem, keyPem] = await Promise.all([readFile(file(c.chain), 'utf8'), readFile(file(c.key), 'utf8')]);
  const answer = await new Promise<{ status: number; body: string } | Error>((resolve) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: `/${c.name}`,
        localAddress: `127.0.0.${10 + index}`,
        cert: chainPem,
        key: keyPem,
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        res.on('error', resolve);
      },
    );
    req.on('error', resolve);
    req.end();
  });
  if (answer instanceof Error) {
    const fingerprint = leafFingerprint(chainPem);
    const line = await waitForLine(sidecar, (l) => l.event === 'peer_rejected' && l.fingerprint_sha256 === fingerprint);
    return { outcome: 'reject', reason: String(line.reason) };
  }
  if (answer.status !== 200) throw new Error(`${c.name}: unexpected answer ${answer.status} ${answer.body}`);
  const seen = JSON.parse(answer.body) as Echoed;
  return { outcome: 'accept', id: String(seen.headers['x-spiffe-id']) };
}

function goVerify(c: Case): Promise<X509Result> {
  return runInterop<X509Result>([
    'verify-x509',
    ...['-chain', file(c.chain), '-key', file(c.key)],
    ...bundleArgs(Object.fromEntries(Object.entries(manifest.bundles).map(([td, rel]) => [td, file(rel)]))),
  ]);
}

/** Runs `work` over `items`, `width` at a time. */
async function inPool<T>(items: T[], width: number, work: (item: T, index: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
}

beforeAll(async () => {
  app = await startEchoApp();
  sidecar = startCli([
    ...['--listen', '127.0.0.1:0', '--upstream', app.url],
    ...['--mtls-cert-file', file(manifest.server.cert), '--mtls-key-file', file(manifest.server.key)],
    ...['--mtls-ca-file', file(manifest.bundles['example.org'])],
    ...['--federated-bundle', `other.org=${file(manifest.bundles['other.org'])}`],
    '--allow-any',
  ]);
  const started = await waitForEvent(sidecar, 'started', 30_000);
  port = (started.listen as { port: number }).port;
  const results = new Map<string, Partial<Row>>();
  await Promise.all([
    inPool(manifest.cases, 3, async (c) => {
      results.set(c.name, { ...results.get(c.name), c, go: await goVerify(c) });
    }),
    inPool(manifest.cases, 1, async (c, i) => {
      const ours = await presentToSidecar(c, i);
      results.set(c.name, { ...results.get(c.name), ours });
    }),
  ]);
  for (const [name, row] of results) rows.set(name, row as Row);
}, 180_000);

afterAll(async () => {
  await stopSidecar(sidecar);
  await app?.close();
  await dir.remove();
});

describe('go-spiffe and our verifier agree on edge-case certificates', () => {
  it('make-certs wrote the cases, and the table of differences names only cases it wrote', () => {
    expect(manifest.cases.length).toBeGreaterThanOrEqual(40);
    const names = new Set(manifest.cases.map((c) => c.name));
    for (const name of Object.keys(DIFFERENCES)) expect(names, name).toContain(name);
    for (const c of manifest.cases) if (c.expect === 'either') expect(DIFFERENCES, c.name).toHaveProperty(c.name);
    expect(manifest.cases.filter((c) => c.expect === 'accept').length).toBeGreaterThanOrEqual(8);
  });

  it.each(manifest.cases)('$name: expected $expect ($spec)', (c) => {
    const { go, ours } = rows.get(c.name)!;
    const goOutcome: Outcome = go.verify.ok ? 'accept' : 'reject';
    const known = DIFFERENCES[c.name];
    const said = `go-spiffe: ${go.verify.error ?? go.verify.id}; ours: ${ours.reason ?? ours.id}`;
    // The invariants, whatever the table says: what go-spiffe rejects we reject; what the specs rule out we
    // reject; a good SVID both accept as the same ID (and go-spiffe would hold it: x509svid.Parse).
    if (!go.verify.ok) expect(ours.outcome, said).toBe('reject');
    if (c.expect === 'reject') expect(ours.outcome, said).toBe('reject');
    if (ours.outcome === 'reject') expect(ours.reason, said).not.toBe('ERR_INTERNAL');
    // Where Node reports OpenSSL's verdict as UNSPECIFIED, our verifier names the rule.
    if (ours.outcome === 'reject') expect(ours.reason, said).not.toBe('UNSPECIFIED');
    if (c.expect === 'accept') {
      expect(go.verify, said).toEqual({ ok: true, id: c.uris![0] });
      expect(go.parse, said).toEqual({ ok: true, id: c.uris![0] });
      expect(ours, said).toEqual({ outcome: 'accept', id: c.uris![0] });
    }
    // And each verdict is the one the table (or, outside it, the manifest) says.
    expect(goOutcome, said).toBe(known?.go ?? c.expect);
    expect(ours.outcome, said).toBe(known?.ours ?? c.expect);
  });

  it('where go-spiffe and we disagree, it is exactly the table', () => {
    const disagreements = [...rows.values()]
      .filter(({ go, ours }) => (go.verify.ok ? 'accept' : 'reject') !== ours.outcome)
      .map(({ c }) => c.name)
      .sort();
    const expected = Object.entries(DIFFERENCES)
      .filter(([, d]) => d.go !== d.ours)
      .map(([name]) => name)
      .sort();
    expect(disagreements).toEqual(expected);
    const table = [...rows.values()].map(({ c, go, ours }) =>
      [
        c.name.padEnd(48),
        c.expect.padEnd(6),
        `go ${go.verify.ok ? 'accept' : 'reject'}`.padEnd(9),
        `parse ${go.parse?.ok ? 'accept' : 'reject'}`.padEnd(12),
        `ours ${ours.outcome}`.padEnd(11),
        ours.reason ?? '',
      ].join(' '),
    );
    console.log(`go-spiffe v2.9.0 x509svid.Verify / Parse vs spiffe-sidecar over TLS:\n${table.join('\n')}`);
  });
});
