// SPIRE mode against a REAL SPIRE server and agent (v1.13.3, built by test/interop/global-setup.ts): the sidecar
// (the real process, dist/main.js) takes its X509-SVID, its bundle, federated bundles and JWT bundles from the
// agent's Workload API, and callers hold SVIDs the same agent issued (`spire-agent api fetch`). Every workload
// here runs under one uid, so the agent gives each of them every entry's SVID; each entry has its own hint and
// each sidecar picks its SVID with --svid-hint.
//
// One server and agent for the file. Each scenario starts its own sidecars and stops them. Every wait is for an
// event (a log line, a request that arrived, what a new connection was served), never a fixed sleep.
import { request as httpsRequest, Agent } from 'node:https';
import { SignJWT, decodeProtectedHeader, generateKeyPair } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { IssuedCertificate } from '../../../src/certs/dev-ca.js';
import { type ClientCert, expectRejected, requestVia } from '../../helpers/client.js';
import { type EchoApp, startEchoApp } from '../../helpers/echo-app.js';
import { NEW_CONNECTION_WORKERS, startLoad } from '../../helpers/load.js';
import { createDevCa, issueSvid } from '../../helpers/pki.js';
import { normalizeSerial, servedSerial } from '../../helpers/server-serial.js';
import { SidecarProcess } from './sidecar-process.js';
import { type EntrySpec, type FetchedSvid, SpireDeployment, TRUST_DOMAIN, TRUST_DOMAIN_ID } from './spire-harness.js';

const OTHER_TD = 'other.test';
const ORDERS: EntrySpec = { id: 'orders', spiffeId: `${TRUST_DOMAIN_ID}/ns/shop/sa/orders`, hint: 'orders' };
const FRONTEND: EntrySpec = { id: 'frontend', spiffeId: `${TRUST_DOMAIN_ID}/ns/shop/sa/frontend`, hint: 'frontend' };
const BILLING: EntrySpec = { id: 'billing', spiffeId: `${TRUST_DOMAIN_ID}/ns/shop/sa/billing`, hint: 'billing' };
/** Made by the rotation scenario only (a 20 s TTL makes the agent push a new SVID every few seconds). */
const ROTATING: EntrySpec = {
  id: 'rotating',
  spiffeId: `${TRUST_DOMAIN_ID}/ns/shop/sa/inventory`,
  hint: 'inventory',
  x509SvidTtlSeconds: 20,
};
/** Made, then deleted under a running sidecar, by the revocation scenario. */
const SHIPPING: EntrySpec = { id: 'shipping', spiffeId: `${TRUST_DOMAIN_ID}/ns/shop/sa/shipping`, hint: 'shipping' };
const PARTNER_ID = `spiffe://${OTHER_TD}/ns/partner/sa/payments`;

let spire: SpireDeployment;
let app: EchoApp;
/** The caller: frontend's X509-SVID, fetched from the same agent. */
let frontend: FetchedSvid;
const sidecars: SidecarProcess[] = [];

beforeAll(async () => {
  app = await startEchoApp();
  spire = await SpireDeployment.start([ORDERS, FRONTEND, BILLING]);
  frontend = await spire.waitForSvid(FRONTEND.spiffeId);
});

afterEach(async () => {
  await Promise.all(sidecars.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await Promise.all(sidecars.splice(0).map((s) => s.stop()));
  await spire?.close();
  await app?.close();
});

/** On failure, the SPIRE daemons' last lines say what SPIRE thought. */
function explainFailures() {
  onTestFailed(() => {
    process.stderr.write(`${spire.logs()}\n`);
  });
}

async function startSidecar(name: string, args: string[]): Promise<SidecarProcess> {
  const sidecar = await SidecarProcess.start(name, [
    '--upstream',
    app.url,
    '--workload-api-socket',
    spire.endpoint,
    ...args,
  ]);
  sidecars.push(sidecar);
  return sidecar;
}

const asClient = (svid: FetchedSvid | IssuedCertificate): ClientCert => ({
  chainPem: svid.chainPem,
  keyPem: svid.keyPem,
});

/** Two callers in a loop until stopped: one keep-alive connection, one new connection per request. */
function startTrickle(port: number, cert: ClientCert) {
  const state = { ok: 0, failures: [] as string[] };
  let stopped = false;
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
  const once = (agent: Agent | false) =>
    new Promise<void>((resolve) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path: '/trickle',
          cert: cert.chainPem,
          key: cert.keyPem,
          rejectUnauthorized: false,
          agent,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) state.ok++;
            else state.failures.push(`HTTP ${res.statusCode}`);
            resolve();
          });
        },
      );
      req.on('error', (err) => {
        state.failures.push(err.message);
        resolve();
      });
      req.end();
    });
  const loop = async (agent: Agent | false) => {
    while (!stopped) await once(agent);
  };
  const loops = [loop(keepAlive), loop(false)];
  return {
    state,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      keepAlive.destroy();
    },
  };
}

const sameSerial = (logged: unknown, serial: string) =>
  typeof logged === 'string' && normalizeSerial(logged.replaceAll(':', '')) === normalizeSerial(serial);

async function until(what: string, check: () => boolean, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('a real SPIRE agent gives the sidecar its identity, rotations, federated bundles and JWT keys', () => {
  it('serves the SVID its hint names; a caller with an SVID from the same agent gets 200 and one from another CA is refused', async () => {
    explainFailures();
    const orders = await startSidecar('orders', ['--svid-hint', ORDERS.hint, '--allow', FRONTEND.spiffeId]);
    const started = orders.events('started')[0];
    // The agent sends all three SVIDs (same uid); the hint picked orders', whatever their order.
    expect(started).toMatchObject({ source: 'workload-api', spiffe_id: ORDERS.spiffeId });
    expect(started.trust_domains).toEqual([TRUST_DOMAIN]);
    // The agent mints the SVIDs of one workload one after another: the sidecar can start with orders' while the
    // agent still signs another (seen once in CI, with a CPU hog beside it), so wait for all three.
    await expect
      .poll(async () => [...(await spire.fetchX509()).keys()].sort(), { timeout: 60_000 })
      .toEqual([BILLING.spiffeId, FRONTEND.spiffeId, ORDERS.spiffeId].sort());
    const fetched = await spire.fetchX509();
    // What a new connection is served is the very SVID the agent hands out for orders.
    expect(await servedSerial(orders.port, asClient(frontend))).toBe(fetched.get(ORDERS.spiffeId)!.serial);

    const res = await requestVia(orders.port, asClient(frontend), { path: '/hello' });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body);
    expect(seen.url).toBe('/hello');
    expect(seen.headers['x-spiffe-id']).toBe(FRONTEND.spiffeId);
    expect(seen.headers['x-forwarded-client-cert']).toContain(`By=${ORDERS.spiffeId};`);
    expect(seen.headers['x-forwarded-client-cert']).toContain(`URI=${FRONTEND.spiffeId}`);

    // billing's SVID verifies (same agent, same CA) but no rule admits it: 403, and the app sees nothing.
    const before = app.seen.length;
    const denied = await requestVia(orders.port, asClient(fetched.get(BILLING.spiffeId)!));
    expect(denied.status).toBe(403);

    // The frontend's SPIFFE ID, signed by a CA SPIRE never heard of: refused at the handshake.
    const stranger = await createDevCa({ trustDomain: TRUST_DOMAIN });
    const impostor = await issueSvid(stranger, { id: FRONTEND.spiffeId });
    await expectRejected(orders.port, asClient(impostor));
    expect(app.seen.length).toBe(before);
    const rejected = await orders.waitFor('peer_rejected', (l) => sameSerial(l.serial, impostor.serialNumber));
    expect(rejected.presented_id).toBe(FRONTEND.spiffeId);
  }, 120_000);

  it('a 20 s SVID TTL makes the agent rotate under load: 0 failed requests, new connections see each new SVID', async () => {
    explainFailures();
    await spire.createEntry(ROTATING);
    try {
      await spire.waitForSvid(ROTATING.spiffeId);
      const inventory = await startSidecar('inventory', ['--svid-hint', ROTATING.hint, '--allow', FRONTEND.spiffeId]);
      expect(inventory.events('started')[0].spiffe_id).toBe(ROTATING.spiffeId);
      const client = asClient(frontend);
      const first = await servedSerial(inventory.port, client);

      const mark = inventory.mark();
      const load = startLoad(
        inventory.port,
        () => client,
        () => client,
      );
      const rotations: string[] = [];
      let okAtFirstRotation = 0;
      let newConnectionsAtFirstRotation = 0;
      try {
        // Two rotations pushed by the agent while the load runs, each then served to 8 new connections.
        for (let n = 0; n < 2; n++) {
          const line = await inventory.waitFor(
            'identity_updated',
            (l) => ![first, ...rotations].includes(normalizeSerial(String(l.serial))),
            { after: mark, timeoutMs: 90_000 },
          );
          expect(line).toMatchObject({ trigger: 'workload_api', spiffe_id: ROTATING.spiffeId });
          const serial = normalizeSerial(String(line.serial));
          rotations.push(serial);
          if (n === 0) {
            okAtFirstRotation = load.ok;
            newConnectionsAtFirstRotation = load.serials.length;
          }
          // New connections move on from every earlier SVID (to this one, or to a later one already).
          const older = [first, ...rotations.slice(0, -1)];
          const from = load.serials.length;
          await until(
            `${NEW_CONNECTION_WORKERS} new connections served ${serial} or a later SVID`,
            () => load.serials.slice(from).filter((s) => !older.includes(s)).length >= NEW_CONNECTION_WORKERS,
          );
        }
      } finally {
        await load.stop();
      }
      expect(load.failures).toEqual([]);
      // Requests kept succeeding after the first rotation, and not only on new connections: the keep-alive
      // and session-resuming callers went on too.
      const okAfter = load.ok - okAtFirstRotation;
      const newConnectionsAfter = load.serials.length - newConnectionsAtFirstRotation;
      expect(okAfter).toBeGreaterThan(newConnectionsAfter);
      // Each serial a new connection saw was one the agent pushed (or the first).
      expect(new Set(load.serials).size).toBeGreaterThanOrEqual(3);
      const pushed = new Set([
        first,
        ...inventory.events('identity_updated').map((l) => normalizeSerial(String(l.serial))),
      ]);
      expect(load.serials.filter((s) => !pushed.has(s))).toEqual([]);
    } finally {
      await Promise.all(sidecars.splice(0).map((s) => s.stop()));
      await spire.deleteEntry(ROTATING.id);
    }
  }, 240_000);

  it('keeps serving its last SVID while the agent is killed, then takes the new stream after the agent restarts', async () => {
    explainFailures();
    const orders = await startSidecar('orders', ['--svid-hint', ORDERS.hint, '--allow', FRONTEND.spiffeId]);
    const client = asClient(frontend);
    const before = await servedSerial(orders.port, client);
    const trickle = startTrickle(orders.port, client);
    try {
      await until('the trickle runs', () => trickle.state.ok >= 10);
      const mark = orders.mark();
      await spire.killAgent();

      // The sidecar sees the stream end, and its reconnects fail and back off (1 s, 2 s, …).
      const ended = await orders.waitFor('workload_api_stream_ended', () => true, { after: mark });
      expect(ended.code).toBe('UNAVAILABLE');
      await orders.waitFor('workload_api_stream_ended', (l) => Number(l.retry_in_ms) >= 1000, { after: mark });
      // Meanwhile requests go on being served with the last good SVID.
      const okDuringOutage = trickle.state.ok;
      await until('requests served during the outage', () => trickle.state.ok >= okDuringOutage + 20);
      for (let i = 0; i < 3; i++) {
        const res = await requestVia(orders.port, client);
        expect(res.status).toBe(200);
        expect(JSON.parse(res.body).headers['x-spiffe-id']).toBe(FRONTEND.spiffeId);
      }
      expect(await servedSerial(orders.port, client)).toBe(before);
      expect(orders.events('identity_updated', mark)).toEqual([]);

      // The agent comes back with its own SVID from disk (same agent ID, so the entries still apply); the
      // workload SVIDs it had in memory are gone, so the sidecar's next message carries a new one.
      await spire.startAgent();
      const updated = await orders.waitFor('identity_updated', () => true, { after: mark, timeoutMs: 90_000 });
      expect(updated).toMatchObject({ trigger: 'workload_api', spiffe_id: ORDERS.spiffeId });
      const after = normalizeSerial(String(updated.serial));
      expect(after).not.toBe(before);
      expect(await servedSerial(orders.port, client)).toBe(after);
      const res = await requestVia(orders.port, client);
      expect(res.status).toBe(200);
    } finally {
      await trickle.stop();
    }
    expect(trickle.state.failures).toEqual([]);
  }, 240_000);

  it("a federated trust domain's bundle arrives through the agent: its caller is refused before, admitted after, refused once it goes", async () => {
    explainFailures();
    const partnerCa = await createDevCa({ trustDomain: OTHER_TD });
    const partner = await issueSvid(partnerCa, { id: PARTNER_ID });
    const billing = await startSidecar('billing', [
      '--svid-hint',
      BILLING.hint,
      '--allow',
      PARTNER_ID,
      '--allow',
      FRONTEND.spiffeId,
    ]);
    expect(billing.events('started')[0]).toMatchObject({ spiffe_id: BILLING.spiffeId, trust_domains: [TRUST_DOMAIN] });

    // Before SPIRE knows other.test: the partner's chain verifies against nothing we trust.
    await expectRejected(billing.port, asClient(partner));
    await billing.waitFor('peer_rejected', (l) => sameSerial(l.serial, partner.serialNumber));

    // The operator's two steps: the bundle, then the entry that federates with it.
    const mark = billing.mark();
    await spire.setBundle(`spiffe://${OTHER_TD}`, partnerCa.certPem);
    await spire.updateEntry({ ...BILLING, federatesWith: [`spiffe://${OTHER_TD}`] });
    const updated = await billing.waitFor('identity_updated', (l) => (l.trust_domains as string[]).includes(OTHER_TD), {
      after: mark,
      timeoutMs: 90_000,
    });
    expect(updated.spiffe_id).toBe(BILLING.spiffeId);
    expect([...(updated.trust_domains as string[])].sort()).toEqual([OTHER_TD, TRUST_DOMAIN].sort());

    const res = await requestVia(billing.port, asClient(partner), { path: '/invoices' });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).headers['x-spiffe-id']).toBe(PARTNER_ID);
    // Our own callers still get in.
    expect((await requestVia(billing.port, asClient(frontend))).status).toBe(200);

    // The federated CA is trusted for other.test only: an SVID it signs for a spire.test ID is refused.
    const crossing = await issueSvid(partnerCa, { id: FRONTEND.spiffeId });
    const seen = app.seen.length;
    await expectRejected(billing.port, asClient(crossing));
    expect(app.seen.length).toBe(seen);

    // The entry stops federating: the agent's next message has no other.test bundle, and each message replaces
    // the last, so the partner is refused again on new connections.
    const unfederated = billing.mark();
    await spire.updateEntry(BILLING);
    await billing.waitFor('identity_updated', (l) => !(l.trust_domains as string[]).includes(OTHER_TD), {
      after: unfederated,
      timeoutMs: 90_000,
    });
    await expectRejected(billing.port, asClient(partner));
    expect((await requestVia(billing.port, asClient(frontend))).status).toBe(200);
  }, 240_000);

  it('deleting its entry makes the agent withdraw the SVID: the sidecar fails closed and refuses new connections', async () => {
    explainFailures();
    await spire.createEntry(SHIPPING);
    let deleted = false;
    try {
      await spire.waitForSvid(SHIPPING.spiffeId);
      const shipping = await startSidecar('shipping', ['--svid-hint', SHIPPING.hint, '--allow', FRONTEND.spiffeId]);
      expect(shipping.events('started')[0].spiffe_id).toBe(SHIPPING.spiffeId);
      expect((await requestVia(shipping.port, asClient(frontend))).status).toBe(200);

      const mark = shipping.mark();
      await spire.deleteEntry(SHIPPING.id);
      deleted = true;
      // The agent's next message to this workload lacks the SVID with our hint (the others stay): revoked.
      const revoked = await shipping.waitFor('identity_revoked', () => true, { after: mark, timeoutMs: 90_000 });
      expect(revoked.serial).toBeDefined();
      const seen = app.seen.length;
      await expectRejected(shipping.port, asClient(frontend));
      await shipping.waitFor('connection_refused', (l) => l.reason === 'identity_revoked', { after: mark });
      expect(app.seen.length).toBe(seen);
      // The withdrawal is what SPIRE did: the agent no longer hands that SVID to anyone.
      expect((await spire.fetchX509()).has(SHIPPING.spiffeId)).toBe(false);
    } finally {
      if (!deleted) await spire.deleteEntry(SHIPPING.id);
    }
  }, 180_000);

  it('JWT-SVIDs from the agent pass a JWT-mode sidecar keyed by the same agent; another audience and forgeries get 401', async () => {
    explainFailures();
    const orders = await startSidecar('orders-jwt', [
      '--auth-mode',
      'jwt',
      '--jwt-audience',
      'orders',
      '--allow',
      FRONTEND.spiffeId,
    ]);
    expect(orders.events('started')[0]).toMatchObject({ auth: 'jwt', transport: 'plain' });
    await orders.waitFor('jwt_bundles_updated', (l) => (l.trust_domains as string[]).includes(TRUST_DOMAIN));
    const url = `http://127.0.0.1:${orders.port}/orders/1`;
    const call = async (token: string) => {
      const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
      return { status: res.status, body: await res.text() };
    };

    const token = await spire.fetchJwt('orders', FRONTEND.spiffeId);
    const ok = await call(token);
    expect(ok.status).toBe(200);
    const seen = JSON.parse(ok.body);
    expect(seen.headers['x-spiffe-id']).toBe(FRONTEND.spiffeId);
    expect(seen.headers.authorization).toBeUndefined();

    const before = app.seen.length;
    // A JWT-SVID for another audience.
    const otherAudience = await call(await spire.fetchJwt('payments', FRONTEND.spiffeId));
    expect(otherAudience.status).toBe(401);
    expect(JSON.parse(otherAudience.body).reason).toBe('ERR_JWT_AUDIENCE');

    // A valid JWT-SVID, but its subject is not allowed: 403.
    const billing = await call(await spire.fetchJwt('orders', BILLING.spiffeId));
    expect(billing.status).toBe(403);

    // Forged: SPIRE's token with its claims changed (a longer life), the signature kept.
    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const altered = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 3600 })).toString('base64url');
    const tampered = await call(`${header}.${altered}.${signature}`);
    expect(tampered.status).toBe(401);
    expect(JSON.parse(tampered.body).reason).toBe('ERR_JWT_SIGNATURE');

    // Forged: the same claims and SPIRE's key ID, signed with a key of our own.
    const { kid, alg } = decodeProtectedHeader(token);
    const { privateKey } = await generateKeyPair(alg!);
    const selfSigned = await new SignJWT(claims).setProtectedHeader({ alg: alg!, kid, typ: 'JWT' }).sign(privateKey);
    const forged = await call(selfSigned);
    expect(forged.status).toBe(401);
    expect(JSON.parse(forged.body).reason).toBe('ERR_JWT_SIGNATURE');

    expect(app.seen.length).toBe(before);
    // And the genuine token still works after all that.
    expect((await call(token)).status).toBe(200);
  }, 120_000);
});
