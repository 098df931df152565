// go-spiffe as the caller: a go-spiffe v2 client (spiffetls, tlsconfig.AuthorizeID, SVID and bundle from files)
// dials our inbound listener, a real `spiffe-sidecar run` in file mode with SVIDs from `spiffe-sidecar certs`.
// Each side verifies the other: go-spiffe checks our SVID and ID, we check its SVID, its trust domain and the
// allow rules.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileModeArgs, type Running, runCli, startCli, waitForEvent } from '../../helpers/process.js';
import { type EchoApp, startEchoApp } from '../../helpers/echo-app.js';
import { tempDir } from '../../helpers/pki.js';
import { bundleArgs, type ClientResult, type Echoed, runInterop, stopSidecar } from './harness.js';
import { waitForLine } from '../../helpers/process.js';

const ORDERS = 'spiffe://example.org/ns/shop/sa/orders';
const FRONTEND = 'spiffe://example.org/ns/shop/sa/frontend';
const STRANGER = 'spiffe://example.org/ns/shop/sa/stranger';
const PARTNER = 'spiffe://other.org/ns/shop/sa/frontend';

let dir: { path: string; remove: () => Promise<void> };
let app: EchoApp;
let sidecar: Running;
let port: number;

/** Where `certs issue` put the SVID of `name`. */
const svid = (name: string) => ({
  cert: join(dir.path, name, 'tls.crt'),
  key: join(dir.path, name, 'tls.key'),
  ca: join(dir.path, name, 'ca.crt'),
});

async function cli(args: string[]) {
  const done = await runCli(args);
  expect(done.code, done.stderr).toBe(0);
}

/** A go-spiffe client of `who` that expects the server to be `serverId`, calling our listener. */
function goClient(who: string, serverId: string, ...extra: string[]) {
  const { cert, key } = svid(who);
  return runInterop<ClientResult>([
    'client',
    ...['-cert', cert, '-key', key],
    ...bundleArgs({ 'example.org': join(dir.path, 'ca', 'ca.crt') }),
    ...['-server-id', serverId, '-url', `https://127.0.0.1:${port}/orders/1`],
    ...extra,
  ]);
}

beforeAll(async () => {
  dir = await tempDir();
  app = await startEchoApp();
  await cli(['certs', 'init', '--trust-domain', 'example.org', '--out', join(dir.path, 'ca')]);
  await cli(['certs', 'init', '--trust-domain', 'other.org', '--out', join(dir.path, 'other-ca')]);
  for (const [id, name, ca] of [
    [ORDERS, 'orders', 'ca'],
    [FRONTEND, 'frontend', 'ca'],
    [STRANGER, 'stranger', 'ca'],
    [PARTNER, 'partner', 'other-ca'],
  ]) {
    await cli(['certs', 'issue', '--id', id, '--ca', join(dir.path, ca), '--out', join(dir.path, name)]);
  }
  const orders = svid('orders');
  sidecar = startCli(
    fileModeArgs(app.url, { certFile: orders.cert, keyFile: orders.key, caFile: orders.ca }, '--allow', FRONTEND),
  );
  const started = await waitForEvent(sidecar, 'started', 30_000);
  port = (started.listen as { port: number }).port;
});

afterAll(async () => {
  await stopSidecar(sidecar);
  await app?.close();
  await dir?.remove();
});

describe('a go-spiffe client and our inbound listener verify each other', () => {
  it('go-spiffe accepts our SVID as the ID it expects, we admit its ID, and the app sees it (spoofing removed)', async () => {
    const result = await goClient('frontend', ORDERS, '-header', 'x-spiffe-id: spiffe://example.org/admin');
    expect(result, result.error).toMatchObject({ ok: true, status: 200, peer_id: ORDERS });
    const seen = JSON.parse(result.body!) as Echoed;
    expect(seen.url).toBe('/orders/1');
    expect(seen.headers['x-spiffe-id']).toBe(FRONTEND);
    expect(seen.headers['x-forwarded-client-cert']).toMatch(
      new RegExp(`^By=${ORDERS};Hash=[0-9a-f]{64};URI=${FRONTEND}$`),
    );
    const authz = await waitForLine(sidecar, (l) => l.event === 'authz' && l.path === '/orders/1');
    expect(authz).toMatchObject({ peer: FRONTEND, decision: 'allow' });
  });

  it('a go-spiffe client that expects another server ID refuses us, naming the ID it got; the app sees nothing', async () => {
    const before = app.seen.length;
    const result = await goClient('frontend', 'spiffe://example.org/ns/shop/sa/payments');
    expect(result.ok).toBe(false);
    expect(result.status).toBeUndefined();
    expect(result.error).toContain(`unexpected ID "${ORDERS}"`);
    // The Go client's bad_certificate alert reaches us, and we say so.
    const refused = await waitForLine(
      sidecar,
      (l) => l.event === 'tls_rejected' && l.reason === 'caller_refused_our_certificate',
    );
    expect(refused.alert).toBe('bad_certificate');
    expect(app.seen.length).toBe(before);
  });

  it('we answer 403 to a verified go-spiffe client whose ID no rule allows; the app sees nothing', async () => {
    const before = app.seen.length;
    const result = await goClient('stranger', ORDERS);
    expect(result, result.error).toMatchObject({ ok: true, status: 403, peer_id: ORDERS });
    expect(JSON.parse(result.body!)).toEqual({ error: 'forbidden', reason: 'no_matching_rule' });
    expect(app.seen.length).toBe(before);
  });

  it('we disconnect a go-spiffe client of a trust domain we hold no bundle for, and log what it presented', async () => {
    const before = app.seen.length;
    const result = await goClient('partner', ORDERS);
    expect(result.ok).toBe(false);
    expect(result.status).toBeUndefined();
    expect(result.error).toBeTruthy();
    const rejected = await waitForLine(sidecar, (l) => l.event === 'peer_rejected' && l.presented_id === PARTNER);
    // OpenSSL's verdict first: the other.org CA is in none of our bundles.
    expect(rejected.reason).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(app.seen.length).toBe(before);
  });
});
