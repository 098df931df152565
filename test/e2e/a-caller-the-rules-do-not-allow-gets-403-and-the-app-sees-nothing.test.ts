import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastAudit } from '../helpers/authz.js';
import { openRaw, requestVia } from '../helpers/client.js';
import { issueSvid } from '../helpers/pki.js';
import { DENIED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s.close());

describe('a caller the rules do not allow gets 403 and the app sees nothing', () => {
  it('answers 403 with a JSON reason, and logs the denial', async () => {
    const res = await requestVia(s.sidecar.port, s.denied, { method: 'POST', path: '/admin', body: 'x' });
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse(res.body)).toEqual({ error: 'forbidden', reason: 'no_matching_rule' });
    expect(s.app.seen).toHaveLength(0);
    expect(await lastAudit(s.sidecar.logs, 'POST', '/admin')).toMatchObject({
      peer: DENIED_ID,
      method: 'POST',
      path: '/admin',
      status: 403,
      decision: 'deny',
      reason: 'no_matching_rule',
    });
  });

  it('denies a federated caller outside its wildcard rule (one segment only)', async () => {
    const deep = await issueSvid(s.caB, { id: 'spiffe://partner.org/billing/a/b' });
    expect((await requestVia(s.sidecar.port, deep)).status).toBe(403);
    const other = await issueSvid(s.caB, { id: 'spiffe://partner.org/billing-admin/x' });
    expect((await requestVia(s.sidecar.port, other)).status).toBe(403);
    expect(s.app.seen).toHaveLength(0);
  });

  it('refuses a WebSocket upgrade from a denied caller without contacting the app', async () => {
    const { socket, received } = await openRaw(s.sidecar.port, s.denied);
    socket.write('GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n');
    await expect.poll(received).toContain('403 Forbidden');
    socket.destroy();
    expect(s.app.upgrades).toHaveLength(0);
  });
});
