// Issue 19: "a key bound to agent A cannot call agent B". Over real TLS, through the real proxy, with the
// Gofannon header and prefix: agent A's key is bound by its own line (route=*:/agents/a/**, whatever the
// rules allow), agent B's by the policy rule that names it. Each reaches its own agent and is refused on
// the other's, by HTTP/1.1 and HTTP/2, however the path is spelled; the app never sees a refused request.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastAudit, printedApiKey, writePolicy } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { h2request, h2session } from '../helpers/http2-fixture.js';
import { createDevCa, servingOptions } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const POLICY = {
  version: 1,
  rules: [
    // Broad on purpose: agent A's key line is what binds it.
    { name: 'agent-a-key', effect: 'allow', path: { prefix: '/agents' }, callers: { api_keys: ['agent-a'] } },
    { name: 'agent-b-key', effect: 'allow', path: { glob: '/agents/b/**' }, callers: { api_keys: ['agent-b'] } },
  ],
};

const ws = useWorkspace();
let sidecar: TestSidecar;

/** What `apikey new --prefix gak_` prints: the key and the line. */
const agentA = printedApiKey({ name: 'agent-a', prefix: 'gak_', route: ['*:/agents/a/**'] });
const agentB = printedApiKey({ name: 'agent-b', prefix: 'gak_' });

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const dir = join(ws.path, 'agents');
  const serving = await servingOptions(dir, ca, 'spiffe://example.org/gateway');
  const keys = join(dir, 'api-keys.txt');
  await writeFile(keys, `${agentA.line}\n${agentB.line}\n`);
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    ...serving,
    'policy-file': await writePolicy(dir, 'policy.json', POLICY),
    'api-keys-file': keys,
    'api-key-header': 'x-gofannon-key',
    'api-key-prefix': 'gak_',
  });
});
afterAll(() => sidecar?.close());

async function call(key: string, path: string, method = 'GET') {
  const res = await requestVia(sidecar.port, undefined, { method, path, headers: { 'X-Gofannon-Key': key } });
  const body = JSON.parse(res.body) as { reason?: string; url?: string; headers?: Record<string, string> };
  return { status: res.status, reason: body.reason, seen: body.headers?.['x-api-key-name'] };
}

describe('a key bound to agent A cannot call agent B', () => {
  it('each key reaches its own agent, as its name', async () => {
    expect(await call(agentA.key, '/agents/a/invoke', 'POST')).toEqual({
      status: 200,
      reason: undefined,
      seen: 'agent-a',
    });
    expect(await call(agentB.key, '/agents/b/invoke', 'POST')).toEqual({
      status: 200,
      reason: undefined,
      seen: 'agent-b',
    });
  });

  it("A on B's routes: refused by its own line, though a rule would allow it", async () => {
    const seen = ws.app.seen.length;
    for (const path of [
      '/agents/b/invoke',
      '/agents/b',
      '/agents/ab/invoke',
      '/agents/A/invoke',
      '/agents/b/a/invoke',
    ]) {
      expect({ path, ...(await call(agentA.key, path, 'POST')) }).toEqual({
        path,
        status: 403,
        reason: 'key_route_denied',
        seen: undefined,
      });
    }
    expect(ws.app.seen.length).toBe(seen);
    expect(await lastAudit(sidecar.logs, 'POST', '/agents/b/invoke')).toMatchObject({
      auth: 'api-key',
      peer: 'api-key:agent-a',
      decision: 'deny',
      reason: 'key_route_denied',
    });
  });

  it("B on A's routes: refused by the rules, which name B for /agents/b/** only", async () => {
    const seen = ws.app.seen.length;
    for (const path of ['/agents/a/invoke', '/agents/bb/invoke', '/agents/']) {
      expect({ path, ...(await call(agentB.key, path, 'POST')) }).toEqual({
        path,
        status: 403,
        reason: 'no_matching_rule',
        seen: undefined,
      });
    }
    expect(ws.app.seen.length).toBe(seen);
  });

  it('no spelling of the path crosses over: dot segments, encoded slashes and dots, doubled slashes', async () => {
    const seen = ws.app.seen.length;
    for (const [key, path] of [
      [agentA.key, '/agents/a/../b/invoke'],
      [agentA.key, '/agents/a/%2e%2e/b/invoke'],
      [agentA.key, '/agents/a/..%2fb/invoke'],
      [agentA.key, '/agents/a%2f..%2fb/invoke'],
      [agentA.key, '//agents/b/invoke'],
      [agentB.key, '/agents/b/../a/invoke'],
      [agentB.key, '/agents/b/%2E%2E/a/invoke'],
    ]) {
      const res = await call(key, path, 'POST');
      expect({ path, refused: res.status >= 400 && res.status < 500 }).toEqual({ path, refused: true });
    }
    expect(ws.app.seen.length).toBe(seen);
  });

  it('over HTTP/2 as well', async () => {
    const session = await h2session(sidecar.port, undefined);
    try {
      const ask = async (key: string, path: string) =>
        (await h2request(session, { ':method': 'POST', ':path': path, 'x-gofannon-key': key })).status;
      expect(await ask(agentA.key, '/agents/a/invoke')).toBe(200);
      expect(await ask(agentA.key, '/agents/b/invoke')).toBe(403);
      expect(await ask(agentB.key, '/agents/a/invoke')).toBe(403);
      expect(await ask(agentB.key, '/agents/b/invoke')).toBe(200);
    } finally {
      session.close();
    }
  });

  it("the other agent's key in the old header, or with the old prefix, is no way round", async () => {
    const res = await requestVia(sidecar.port, undefined, {
      method: 'POST',
      path: '/agents/b/invoke',
      headers: { 'x-api-key': agentB.key, 'X-Gofannon-Key': agentA.key },
    });
    expect([res.status, JSON.parse(res.body).reason]).toEqual([403, 'key_route_denied']);
    const sk = await call(`sk_${agentB.key.slice(4)}`, '/agents/b/invoke', 'POST');
    expect([sk.status, sk.reason]).toEqual([401, 'ERR_API_KEY_UNKNOWN']);
  });
});
