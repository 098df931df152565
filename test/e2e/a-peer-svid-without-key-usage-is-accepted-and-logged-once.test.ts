// VERIFIER-RULES B8: a peer's leaf without a keyUsage extension is accepted (RFC 5280 reads a missing keyUsage as
// "no restriction"; OpenSSL accepts it too), but X509-SVID §4.3 says an SVID sets digitalSignature: the sidecar
// logs the issuer's mistake once per leaf, when it first verifies it, not on every connection.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { requestVia } from '../helpers/client.js';
import { issueSvid } from '../helpers/pki.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s?.close());

const withoutKeyUsage = () => s.sidecar.logs.filter((l) => l.event === 'peer_without_key_usage');

it('a caller whose SVID has no keyUsage is served, and one warning names it, for its first connection only', async () => {
  // The scenario's callers carry keyUsage digitalSignature: no warning for them.
  expect((await requestVia(s.sidecar.port, s.allowed, { path: '/with-key-usage' })).status).toBe(200);
  expect(withoutKeyUsage()).toHaveLength(0);

  const bare = await issueSvid(s.caA, { id: ALLOWED_ID, template: { keyUsage: undefined } });
  expect((await requestVia(s.sidecar.port, bare, { path: '/first' })).status).toBe(200);
  expect(withoutKeyUsage()).toEqual([
    expect.objectContaining({ level: 'warn', event: 'peer_without_key_usage', peer: ALLOWED_ID }),
  ]);
  // The same leaf on a new connection is found verified: it was logged when it was verified.
  expect((await requestVia(s.sidecar.port, bare, { path: '/second' })).status).toBe(200);
  expect(withoutKeyUsage()).toHaveLength(1);
});
