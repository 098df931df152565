// SPIRE mode end to end: the sidecar's identity comes from a Workload API server (real gRPC, real Unix
// socket); callers connect over real TLS.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CertificateAuthority, type IssuedCertificate, issueIntermediateCa } from '../../src/certs/dev-ca.js';
import { expectRejected, requestVia } from '../helpers/client.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { newConnectionsSee, startLoad } from '../helpers/load.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { normalizeSerial, servedSerial } from '../helpers/server-serial.js';
import { type SpireTestSidecar, startSpireTestSidecar } from '../helpers/sidecar.js';
import { TestWorkloadApi, type X509State } from '../helpers/workload-api-server.js';

const SERVER_ID = 'spiffe://example.org/server';
const CLIENT_ID = 'spiffe://example.org/client';
const PARTNER_ID = 'spiffe://partner.org/billing';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let partner: CertificateAuthority;
let client: IssuedCertificate;
let app: EchoApp;
let api: TestWorkloadApi;
let sidecar: SpireTestSidecar | undefined;

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  partner = await createDevCa({ trustDomain: 'partner.org' });
  client = await issueSvid(ca, { id: CLIENT_ID });
  app = await startEchoApp();
});
afterEach(async () => {
  await sidecar?.close();
  sidecar = undefined;
  await api?.close();
});
afterAll(async () => {
  await app.close();
  await dir.remove();
});

let sockets = 0;
async function startAgent(state: X509State) {
  api = await TestWorkloadApi.start(join(dir.path, `agent-${sockets++}.sock`));
  api.setX509(state);
  return api;
}

function serving(svid: IssuedCertificate, federated?: Record<string, string>): X509State {
  return { svids: [{ spiffeId: SERVER_ID, svid, bundlePem: ca.certPem }], federated };
}

async function startSidecar(extra: Record<string, unknown> = {}) {
  sidecar = await startSpireTestSidecar({
    upstream: app.url,
    'workload-api-socket': api.address,
    allow: [CLIENT_ID, PARTNER_ID],
    ...extra,
  });
  return sidecar;
}

describe('in SPIRE mode the sidecar serves and rotates what the agent pushes', () => {
  it('serves the pushed SVID; verified callers get through with identity headers', async () => {
    const svid = await issueSvid(ca, { id: SERVER_ID });
    await startAgent(serving(svid));
    const s = await startSidecar();
    expect(await servedSerial(s.port, client)).toBe(normalizeSerial(svid.serialNumber));
    const res = await requestVia(s.port, client);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).headers['x-spiffe-id']).toBe(CLIENT_ID);
    expect(JSON.parse(res.body).headers['x-forwarded-client-cert']).toContain(`By=${SERVER_ID};`);
    expect(api.calls.every((c) => c.header.length === 1 && c.header[0] === 'true')).toBe(true);
  });

  it('rotating the SVID every 500 ms for 10 s under load: 0 failed requests, new connections see new serials', async () => {
    const steps = 20;
    const svids = await Promise.all(Array.from({ length: steps + 1 }, () => issueSvid(ca, { id: SERVER_ID })));
    const resuming = await issueSvid(await issueIntermediateCa(ca), { id: CLIENT_ID });
    await startAgent(serving(svids[0]));
    const s = await startSidecar({ 'log-level': 'warn' });
    const load = startLoad(
      s.port,
      () => client,
      () => resuming,
    );
    const start = Date.now();
    for (let step = 1; step <= steps; step++) {
      await new Promise((r) => setTimeout(r, Math.max(0, start + step * 500 - Date.now())));
      api.setX509(serving(svids[step]));
    }
    const elapsed = Date.now() - start;
    await expect.poll(() => s.identity.current().svid.chain[0].serialNumber).toBe(svids[steps].serialNumber);
    await newConnectionsSee(load, normalizeSerial(svids[steps].serialNumber));
    await load.stop();
    expect(load.failures).toEqual([]);
    expect(load.ok).toBeGreaterThan(500);
    const issued = new Set(svids.map((v) => normalizeSerial(v.serialNumber)));
    const seen = new Set(load.serials);
    for (const serial of seen) expect(issued.has(serial)).toBe(true);
    expect(seen.size).toBeGreaterThanOrEqual(steps / 2);
    expect(load.serials.at(-1)).toBe(normalizeSerial(svids[steps].serialNumber));
    expect(elapsed).toBeGreaterThanOrEqual(10_000);
    console.log(
      `spire rotation: ${steps} rotations in ${elapsed} ms, ${load.ok} requests, 0 failed, ${s.identity.counters.updated} applied, ${seen.size}/${issued.size} serials seen by new connections`,
    );
  });

  it('a federated bundle added then removed: that domain is accepted, then rejected on new connections', async () => {
    const svid = await issueSvid(ca, { id: SERVER_ID });
    const billing = await issueSvid(partner, { id: PARTNER_ID });
    await startAgent(serving(svid));
    const s = await startSidecar();
    await expectRejected(s.port, billing);
    expect(s.logs.filter((l) => l.event === 'peer_rejected').at(-1)?.reason).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');

    api.setX509(serving(svid, { 'spiffe://partner.org': partner.certPem }));
    await expect.poll(() => [...s.identity.current().bundles.keys()].sort()).toEqual(['example.org', 'partner.org']);
    const res = await requestVia(s.port, billing);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).headers['x-spiffe-id']).toBe(PARTNER_ID);

    api.setX509(serving(svid));
    await expect.poll(() => [...s.identity.current().bundles.keys()]).toEqual(['example.org']);
    await expectRejected(s.port, billing);
  });

  it('the agent restarts mid-run: the sidecar keeps serving, reconnects, and picks up the next SVID', async () => {
    const first = await issueSvid(ca, { id: SERVER_ID });
    await startAgent(serving(first));
    const s = await startSidecar();
    await api.kill();
    await expect.poll(() => s.logs.some((l) => l.event === 'workload_api_stream_ended')).toBe(true);
    expect((await requestVia(s.port, client)).status).toBe(200);
    expect(s.identity.status()).toEqual({ ready: true });
    const next = await issueSvid(ca, { id: SERVER_ID });
    api.setX509(serving(next));
    await api.restart();
    // Default backoff (1 s, 2 s, ...): the reconnect comes within a few seconds.
    await expect
      .poll(() => s.identity.current().svid.chain[0].serialNumber, { timeout: 10_000 })
      .toBe(next.serialNumber);
    expect(await servedSerial(s.port, client)).toBe(normalizeSerial(next.serialNumber));
  });

  it('--svid-hint picks the SVID with that hint', async () => {
    const internal = await issueSvid(ca, { id: 'spiffe://example.org/internal' });
    const external = await issueSvid(ca, { id: SERVER_ID });
    await startAgent({
      svids: [
        { spiffeId: 'spiffe://example.org/internal', svid: internal, bundlePem: ca.certPem, hint: 'internal' },
        { spiffeId: SERVER_ID, svid: external, bundlePem: ca.certPem, hint: 'external' },
      ],
    });
    const s = await startSidecar({ 'svid-hint': 'external' });
    expect(s.identity.current().svid.id.toString()).toBe(SERVER_ID);
    expect(await servedSerial(s.port, client)).toBe(normalizeSerial(external.serialNumber));
  });

  it('the agent revokes our identity: new connections are refused until a new SVID arrives', async () => {
    const svid = await issueSvid(ca, { id: SERVER_ID });
    await startAgent(serving(svid));
    const s = await startSidecar();
    expect((await requestVia(s.port, client)).status).toBe(200);
    api.unregister();
    await expect.poll(() => s.identity.status().reason).toBe('identity_revoked');
    const seen = app.seen.length;
    await expectRejected(s.port, client);
    expect(app.seen.length).toBe(seen);
    expect(s.logs.some((l) => l.event === 'connection_refused' && l.reason === 'identity_revoked')).toBe(true);
    api.register();
    await expect.poll(() => s.identity.status(), { timeout: 10_000 }).toEqual({ ready: true });
    expect((await requestVia(s.port, client)).status).toBe(200);
  });
});
