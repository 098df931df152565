// `--rate-limit-store rediss://…` against a real redis-server that speaks TLS only and accepts only
// clients whose certificate chains to our SPIFFE trust bundle: the sidecar presents its SVID, checks the
// store's certificate against `--rate-limit-store-ca-file` (a CA of the store's own, with an IP SAN), and
// counts in the store. Given a CA that did not sign the store's certificate, it never counts there: the
// error names the certificate and requests are still answered, by the local fallback.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Issuer, issueCertificate, type IssuedCertificate } from '../../src/certs/dev-ca.js';
import { x509 } from '../../src/spiffe/x509-library.js';
import { sample, scrapeMetrics, waitForLog, writePolicy } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, KU, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const LIMIT = 3;
const POLICY = {
  version: 1,
  rules: [
    {
      name: 'reports',
      effect: 'allow',
      path: { prefix: '/reports' },
      rate_limit: { requests: LIMIT, per: '1m', burst: LIMIT },
    },
  ],
};
/** Where the store keeps a caller's bucket of the rule above, scoped by our own SPIFFE ID (shared-rate-limits.ts). */
const bucketKey = (caller: string) =>
  `spiffe-sidecar:rl:${JSON.stringify(['spiffe://example.org/reports', 'reports', LIMIT, 60_000, LIMIT])}:${caller}`;

const ws = useWorkspace();
let serving: ServingFiles;
let policyFile: string;
/** The CA that signed redis's certificate, and one that did not. */
let storeCaFile: string;
let otherCaFile: string;
let storeCaPem: string;
let redis: RedisServer;
let callers: IssuedCertificate[];
const sidecars: TestSidecar[] = [];
const clients: Redis[] = [];

/** A CA that is not a SPIFFE trust domain's: what signs a managed Redis's certificate. */
async function plainCa(name: string): Promise<Issuer> {
  const ca = await issueCertificate(undefined, {
    subject: `O=spiffe-sidecar test, CN=${name}`,
    isCA: true,
    keyUsage: KU.keyCertSign | KU.cRLSign,
  });
  return { certPem: ca.certPem, keys: ca.keys, cert: ca.cert, chainPem: '' };
}

/** A client of our own to the TLS store (no reconnection: one attempt, its outcome observed). */
function storeClient(tls: { ca: string; cert?: string; key?: string }): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port: redis.port,
    tls,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  clients.push(client);
  return client;
}

async function startWithStoreCa(caFile: string): Promise<TestSidecar> {
  const sidecar = await startTestSidecar({
    upstream: ws.app.url,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
    'policy-file': policyFile,
    'rate-limit-store': redis.url,
    'rate-limit-store-ca-file': caFile,
    // Generous: on a loaded machine a healthy store must not time out.
    'rate-limit-store-timeout': '5s',
  });
  sidecars.push(sidecar);
  return sidecar;
}

/** A sample without labels; NaN when absent (so that a missing metric cannot pass for 0). */
function unlabelled(scrape: string, name: string): number {
  const line = scrape.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}

async function statuses(port: number, caller: IssuedCertificate, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await requestVia(port, caller, { path: `/reports/${i}` })).status);
  return out;
}

beforeAll(async () => {
  const dir = join(ws.path, 'files');
  await mkdir(dir);
  const trustDomain = await createDevCa({ trustDomain: 'example.org' });
  serving = await writeServingFiles(
    dir,
    await issueSvid(trustDomain, { id: 'spiffe://example.org/reports' }),
    trustDomain.certPem,
  );
  callers = await Promise.all(
    ['alice', 'bob', 'carol'].map((n) => issueSvid(trustDomain, { id: `spiffe://example.org/${n}` })),
  );
  policyFile = await writePolicy(dir, 'policy.json', POLICY);

  const storeCa = await plainCa('store CA');
  const otherCa = await plainCa('some other CA');
  storeCaPem = storeCa.certPem;
  storeCaFile = join(dir, 'store-ca.pem');
  otherCaFile = join(dir, 'other-ca.pem');
  await writeFile(storeCaFile, storeCa.certPem);
  await writeFile(otherCaFile, otherCa.certPem);
  // The store is reached by IP address: its certificate names 127.0.0.1 (no SNI is sent for an IP).
  const redisCert = await issueCertificate(storeCa, {
    subject: 'O=spiffe-sidecar test, CN=redis',
    keyUsage: KU.digitalSignature,
    extKeyUsage: [x509.ExtendedKeyUsage.serverAuth],
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }])],
  });
  const certFile = join(dir, 'redis.crt');
  const keyFile = join(dir, 'redis.key');
  await writeFile(certFile, redisCert.chainPem);
  await writeFile(keyFile, redisCert.keyPem, { mode: 0o600 });
  // Clients must present a certificate that chains to the SPIFFE trust bundle: an SVID.
  redis = await startRedis(join(ws.path), { tls: { certFile, keyFile, caFile: serving.caFile } });
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await Promise.all(sidecars.map((s) => s.close()));
  await redis?.close();
});

describe('a rediss:// store gets our SVID as client certificate', () => {
  it('the store refuses a client without an SVID and accepts one with an SVID (what the sidecar is up against)', async () => {
    const anonymous = storeClient({ ca: storeCaPem });
    let ready = false;
    anonymous.on('ready', () => (ready = true));
    const refused = new Promise<Error>((resolve) => anonymous.once('error', resolve));
    await anonymous.connect().catch(() => {});
    const err = await refused;
    expect(ready).toBe(false);
    // TLS 1.3: the client's handshake ends before the server has checked its (missing) certificate; the
    // server then resets the connection (or its alert arrives first).
    expect(err.message).toMatch(/ECONNRESET|EPIPE|certificate|handshake/i);

    const withSvid = storeClient({ ca: storeCaPem, cert: callers[1].chainPem, key: callers[1].keyPem });
    await withSvid.connect();
    expect(await withSvid.ping()).toBe('PONG');
  });

  it('presenting its SVID, the sidecar counts in the store: the burst is admitted, then 429', async () => {
    const sidecar = await startWithStoreCa(storeCaFile);
    await waitForLog(sidecar.logs, { event: 'rate_limit_store', mode: 'shared' }, 0, 15_000);
    const [alice] = callers;
    const answers = await statuses(sidecar.port, alice, LIMIT + 1);
    expect(answers).toEqual([...Array<number>(LIMIT).fill(200), 429]);
    const limited = await requestVia(sidecar.port, alice, { path: '/reports/again' });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);

    // The bucket is in redis, under the caller's SPIFFE ID (read by a client of ours, with an SVID too).
    const reader = storeClient({ ca: storeCaPem, cert: callers[1].chainPem, key: callers[1].keyPem });
    await reader.connect();
    const key = bucketKey('spiffe://example.org/alice');
    expect(await reader.keys('spiffe-sidecar:rl:*')).toEqual([key]);
    expect(await reader.pttl(key)).toBeGreaterThan(0);

    // Never fell back: no switch to a failure mode, and the metrics say the store counts.
    expect(sidecar.logs.filter((l) => l.event === 'rate_limit_store' && l.reason !== 'connecting')).toEqual([
      expect.objectContaining({ mode: 'shared' }),
    ]);
    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    expect(unlabelled(scrape, 'spiffe_sidecar_rate_limit_store_up')).toBe(1);
    expect(sample(scrape, 'spiffe_sidecar_rate_limit_store_mode_changes_total', { mode: 'shared' })).toBe(1);
  });

  it('given a CA that did not sign the store’s certificate, it never counts there; the local fallback answers', async () => {
    const sidecar = await startWithStoreCa(otherCaFile);
    const error = await waitForLog(sidecar.logs, { event: 'rate_limit_store_error' }, 0, 15_000);
    expect(error.error).toMatch(/certificate/i);

    // --rate-limit-store-failure local (the default), one replica: the whole limit, counted here.
    const carol = callers[2];
    expect(await statuses(sidecar.port, carol, LIMIT + 1)).toEqual([...Array<number>(LIMIT).fill(200), 429]);

    expect(sidecar.logs.filter((l) => l.event === 'rate_limit_store' && l.mode === 'shared')).toEqual([]);
    expect(sidecar.logs.find((l) => l.event === 'rate_limit_store')).toMatchObject({
      mode: 'local',
      reason: 'connecting',
    });
    const scrape = await scrapeMetrics(sidecar.adminAddress().port);
    expect(unlabelled(scrape, 'spiffe_sidecar_rate_limit_store_up')).toBe(0);
    expect(sample(scrape, 'spiffe_sidecar_rate_limit_store_mode_changes_total', { mode: 'shared' })).toBe(0);
    // Nothing of carol's reached the store.
    const reader = storeClient({ ca: storeCaPem, cert: callers[1].chainPem, key: callers[1].keyPem });
    await reader.connect();
    expect(await reader.exists(bucketKey('spiffe://example.org/carol'))).toBe(0);
  });
});
