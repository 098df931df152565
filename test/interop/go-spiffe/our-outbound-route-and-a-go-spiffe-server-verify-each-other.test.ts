// go-spiffe as the callee: an app speaks plain HTTP to our outbound listener, and our sidecar (a real
// `spiffe-sidecar run`, file mode, outbound only) originates mTLS with our SVID to a go-spiffe v2 HTTPS server
// (tlsconfig.MTLSServerConfig with AuthorizeID or AuthorizeMemberOf) that echoes the caller's SPIFFE ID.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Running, runCli, startCli, waitForEvent } from '../../helpers/process.js';
import { tempDir } from '../../helpers/pki.js';
import { bundleArgs, type GoServer, plainGet, startGoServer, stopSidecar } from './harness.js';
import { waitForLine } from '../../helpers/process.js';

const FRONTEND = 'spiffe://example.org/ns/shop/sa/frontend';
const INVENTORY = 'spiffe://example.org/ns/shop/sa/inventory';
const PAYMENTS = 'spiffe://example.org/ns/shop/sa/payments';

let dir: { path: string; remove: () => Promise<void> };
const servers: GoServer[] = [];
let byId: GoServer;
let byTrustDomain: GoServer;
let wantsPayments: GoServer;
let sidecar: Running;
/** The sidecar's outbound listeners, by route name. */
const routes: Record<string, number> = {};

async function cli(args: string[]) {
  const done = await runCli(args);
  expect(done.code, done.stderr).toBe(0);
}

/** A go-spiffe server holding the inventory SVID, admitting whom `authorize` says. */
async function goServer(...authorize: string[]) {
  const server = await startGoServer([
    ...['-cert', join(dir.path, 'inventory', 'tls.crt'), '-key', join(dir.path, 'inventory', 'tls.key')],
    ...bundleArgs({ 'example.org': join(dir.path, 'ca', 'ca.crt') }),
    ...authorize,
  ]);
  servers.push(server);
  return server;
}

beforeAll(async () => {
  dir = await tempDir();
  await cli(['certs', 'init', '--trust-domain', 'example.org', '--out', join(dir.path, 'ca')]);
  for (const [id, name] of [
    [FRONTEND, 'frontend'],
    [INVENTORY, 'inventory'],
  ]) {
    await cli(['certs', 'issue', '--id', id, '--ca', join(dir.path, 'ca'), '--out', join(dir.path, name)]);
  }
  byId = await goServer('-authorize-id', FRONTEND);
  byTrustDomain = await goServer('-authorize-member-of', 'example.org');
  wantsPayments = await goServer('-authorize-id', PAYMENTS);
  const frontend = join(dir.path, 'frontend');
  const route = (port: number, id: string) => ['--outbound', `127.0.0.1:0=https://127.0.0.1:${port},id=${id}`];
  sidecar = startCli([
    ...['--mtls-cert-file', join(frontend, 'tls.crt'), '--mtls-key-file', join(frontend, 'tls.key')],
    ...['--mtls-ca-file', join(frontend, 'ca.crt')],
    ...route(byId.port, INVENTORY),
    ...route(byTrustDomain.port, 'spiffe://example.org/ns/shop/**'),
    ...route(byId.port, PAYMENTS),
    ...route(wantsPayments.port, INVENTORY),
  ]);
  const started = await waitForEvent(sidecar, 'started', 30_000);
  const listens = (started.outbound as { listen: { port: number } }[]).map((o) => o.listen.port);
  [routes.byId, routes.byTrustDomain, routes.wrongRemoteId, routes.remoteWantsPayments] = listens;
});

afterAll(async () => {
  await stopSidecar(sidecar);
  await Promise.all(servers.map((s) => s.stop()));
  await dir?.remove();
});

describe('our outbound route and a go-spiffe server verify each other', () => {
  it('the go-spiffe server (AuthorizeID) admits our SVID and echoes our SPIFFE ID to the app', async () => {
    const res = await plainGet(routes.byId, '/stock/42?fresh=1');
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ peer_id: FRONTEND, method: 'GET', path: '/stock/42?fresh=1' });
    const seen = await byId.waitFor((e) => e.event === 'request' && e.path === '/stock/42?fresh=1');
    expect(seen.peer_id).toBe(FRONTEND);
  });

  it('the go-spiffe server (AuthorizeMemberOf) admits us too, and our route rule accepts its ID', async () => {
    const res = await plainGet(routes.byTrustDomain, '/stock/7');
    expect(res.status, res.body).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ peer_id: FRONTEND, path: '/stock/7' });
  });

  it('a route that expects another server ID refuses the go-spiffe server: 502 with a reason, no request sent', async () => {
    const res = await plainGet(routes.wrongRemoteId, '/pay/1');
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toEqual({ error: 'bad_gateway', reason: 'remote_identity_mismatch' });
    const line = await waitForLine(sidecar, (l) => l.event === 'outbound_rejected' && l.path === '/pay/1');
    expect(line).toMatchObject({ reason: 'remote_identity_mismatch', expected: PAYMENTS });
    expect(String(line.msg)).toContain(INVENTORY);
    // Not a byte of HTTP went to the remote: our 502 came after the socket was closed.
    expect(byId.events.filter((e) => e.event === 'request' && e.path === '/pay/1')).toEqual([]);
  });

  it('a go-spiffe server that authorizes another ID refuses our SVID, and we answer 502 with a reason', async () => {
    const res = await plainGet(routes.remoteWantsPayments, '/stock/9');
    expect(res.status).toBe(502);
    const answer = JSON.parse(res.body) as { error: string; reason: string };
    expect(answer.error).toBe('bad_gateway');
    // The remote was reached and refused our certificate with a TLS alert: not `remote_unreachable`.
    expect(answer.reason).toBe('remote_refused_our_certificate');
    const refusal = await wantsPayments.waitFor((e) => e.event === 'tls_error');
    expect(refusal.error).toContain(`unexpected ID "${FRONTEND}"`);
    const line = await waitForLine(sidecar, (l) => l.event === 'outbound_rejected' && l.path === '/stock/9');
    expect(line.reason).toBe(answer.reason);
    expect(String(line.msg)).toMatch(/alert bad certificate/);
    expect(wantsPayments.events.filter((e) => e.event === 'request')).toEqual([]);
  });
});
