import { createHash } from 'node:crypto';
import { Agent, request } from 'node:https';
import { issueIntermediateCa } from '../../src/certs/dev-ca.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastAudit } from '../helpers/authz.js';
import { openRaw, requestVia } from '../helpers/client.js';
import { issueSvid } from '../helpers/pki.js';
import { ALLOWED_ID, type Scenario, SERVER_ID, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s.close());

function leafSha256(pem: string): string {
  const body = pem.split('-----END CERTIFICATE-----')[0].replace(/-----BEGIN CERTIFICATE-----|\s+/g, '');
  return createHash('sha256').update(Buffer.from(body, 'base64')).digest('hex');
}

describe('an allowed caller reaches the app with its verified identity', () => {
  it('gets 200, and the app sees exactly one identity header and one XFCC, both verified', async () => {
    const before = s.app.seen.length;
    const res = await requestVia(s.sidecar.port, s.allowed, { path: '/orders?id=7' });
    expect(res.status).toBe(200);
    expect(res.headers['x-app']).toBe('echo');
    expect(s.app.seen.length).toBe(before + 1);
    const seen = s.app.seen.at(-1)!;
    expect(seen.url).toBe('/orders?id=7');
    const idHeaders = seen.rawHeaders.filter(
      (_, i) => i % 2 === 0 && seen.rawHeaders[i].toLowerCase() === 'x-spiffe-id',
    );
    expect(idHeaders).toHaveLength(1);
    expect(seen.headers['x-spiffe-id']).toBe(ALLOWED_ID);
    expect(seen.headers['x-forwarded-client-cert']).toBe(
      `By=${SERVER_ID};Hash=${leafSha256(s.allowed.certPem)};URI=${ALLOWED_ID}`,
    );
  });

  it('replaces every spoofed identity header the client sends, in any spelling', async () => {
    const res = await requestVia(s.sidecar.port, s.allowed, {
      headers: [
        'host',
        'sidecar.test',
        'X-SPIFFE-ID',
        'spiffe://example.org/admin',
        'x_spiffe_id',
        'spiffe://example.org/admin',
        'x-forwarded-client-cert',
        'By=spiffe://example.org/x;URI=spiffe://example.org/admin',
        'X_Forwarded_Client_Cert',
        'URI=spiffe://example.org/admin',
      ],
    });
    expect(res.status).toBe(200);
    const seen = s.app.seen.at(-1)!;
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.filter((n) => n.replaceAll('_', '-') === 'x-spiffe-id')).toEqual(['x-spiffe-id']);
    expect(names.filter((n) => n.replaceAll('_', '-') === 'x-forwarded-client-cert')).toEqual([
      'x-forwarded-client-cert',
    ]);
    expect(seen.headers['x-spiffe-id']).toBe(ALLOWED_ID);
    expect(JSON.stringify(seen.rawHeaders)).not.toContain('spiffe://example.org/admin');
  });

  it('drops headers the client lists in Connection, and hop-by-hop headers', async () => {
    await requestVia(s.sidecar.port, s.allowed, {
      headers: {
        connection: 'keep-alive, x-secret-hop',
        'x-secret-hop': '1',
        'proxy-authorization': 'x',
        te: 'trailers',
      },
    });
    const seen = s.app.seen.at(-1)!;
    expect(seen.headers['x-secret-hop']).toBeUndefined();
    expect(seen.headers['proxy-authorization']).toBeUndefined();
    expect(seen.headers.te).toBeUndefined();
  });

  it('streams request and response bodies (8 MiB upload, checked by hash)', async () => {
    const body = Buffer.alloc(8 * 1024 * 1024, 7);
    const res = await requestVia(s.sidecar.port, s.allowed, { method: 'POST', path: '/upload', body });
    expect(res.status).toBe(200);
    const echoed = JSON.parse(res.body);
    expect(echoed.bodyLength).toBe(body.length);
    expect(echoed.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('admits a federated caller allowed by a wildcard rule, with its own trust domain', async () => {
    const billing = await issueSvid(s.caB, { id: 'spiffe://partner.org/billing/invoices' });
    const res = await requestVia(s.sidecar.port, billing);
    expect(res.status).toBe(200);
    expect(s.app.seen.at(-1)!.headers['x-spiffe-id']).toBe('spiffe://partner.org/billing/invoices');
  });

  it('admits a caller whose SVID comes from an intermediate, on every new connection of a resuming client', async () => {
    const intermediate = await issueIntermediateCa(s.caA);
    const svid = await issueSvid(intermediate, { id: ALLOWED_ID });
    // Node's https.Agent caches TLS sessions and tries to resume them; a resumed session carries only
    // the peer's leaf, not the intermediates it sent in the full handshake.
    const agent = new Agent({ keepAlive: false, maxCachedSessions: 10 });
    const get = () =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: s.sidecar.port,
            cert: svid.chainPem,
            key: svid.keyPem,
            rejectUnauthorized: false,
            agent,
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end();
      });
    for (let i = 0; i < 4; i++) expect(await get()).toBe(200);
    agent.destroy();
  });

  it('serves many requests on one keep-alive connection with one authentication', async () => {
    const { socket, received } = await openRaw(s.sidecar.port, s.allowed);
    const authBefore = s.sidecar.logs.filter((l) => l.event === 'peer_rejected').length;
    const requests = 5;
    for (let i = 0; i < requests; i++) socket.write(`GET /k${i} HTTP/1.1\r\nhost: x\r\n\r\n`);
    await expect.poll(() => received().match(/HTTP\/1\.1 200/g)?.length ?? 0).toBe(requests);
    socket.destroy();
    expect(s.sidecar.logs.filter((l) => l.event === 'peer_rejected').length).toBe(authBefore);
    const urls = s.app.seen.slice(-requests).map((r) => r.url);
    expect(urls).toEqual(['/k0', '/k1', '/k2', '/k3', '/k4']);
  });

  it('forwards a WebSocket upgrade with identity headers, then relays bytes both ways', async () => {
    const { socket, received } = await openRaw(s.sidecar.port, s.allowed);
    socket.write(
      'GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nx-spiffe-id: spiffe://example.org/admin\r\n\r\n',
    );
    await expect.poll(received).toContain('101 Switching Protocols');
    socket.write('ping-through-tunnel');
    await expect.poll(received).toContain('ping-through-tunnel');
    socket.destroy();
    const upgrade = s.app.upgrades.at(-1)!;
    expect(upgrade.url).toBe('/ws');
    expect(upgrade.headers['x-spiffe-id']).toBe(ALLOWED_ID);
    expect(upgrade.headers.upgrade).toBe('websocket');
  });

  it('writes one audit line per decision, with peer, method, path (no query) and rule', async () => {
    await requestVia(s.sidecar.port, s.allowed, { method: 'DELETE', path: '/items/9?token=secret' });
    // Written once the exchange is over (a WebSocket tunnel closed just before logs its own at its close).
    const line = await lastAudit(s.sidecar.logs, 'DELETE', '/items/9');
    expect(line).toMatchObject({
      peer: ALLOWED_ID,
      method: 'DELETE',
      path: '/items/9',
      decision: 'allow',
      rule: ALLOWED_ID,
    });
    expect(JSON.stringify(s.sidecar.logs)).not.toContain('secret');
  });
});
