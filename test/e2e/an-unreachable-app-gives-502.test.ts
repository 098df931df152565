import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestVia } from '../helpers/client.js';
import { type Scenario, startScenario } from '../helpers/scenario.js';

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

let s: Scenario;
beforeAll(async () => {
  s = await startScenario({ upstream: `http://127.0.0.1:${await closedPort()}` });
});
afterAll(() => s.close());

describe('an unreachable app gives 502', () => {
  it('answers an allowed caller with 502 and a JSON reason', async () => {
    const res = await requestVia(s.sidecar.port, s.allowed);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toEqual({ error: 'bad_gateway', reason: 'upstream_unreachable' });
    expect(
      s.sidecar.logs.some(
        (l) => l.event === 'upstream_error' && l.reason === 'upstream_unreachable' && l.error === 'ECONNREFUSED',
      ),
    ).toBe(true);
  });

  it('still answers a denied caller with 403 (authorization comes first)', async () => {
    expect((await requestVia(s.sidecar.port, s.denied)).status).toBe(403);
  });
});
