// HEAD is answered by the app's GET handler, so a rule for GET decides HEAD too: a deny of GET refuses HEAD
// before the app sees it, an allow of GET admits HEAD and nothing more, and an API key limited to
// `route=GET:...` may send HEAD there. Over real mTLS, HTTP/1.1 and HTTP/2, in front of a real app.
import * as http2 from 'node:http2';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { apiKey, lastAudit, writePolicy } from '../helpers/authz.js';
import { requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const SERVER_ID = 'spiffe://example.org/ns/prod/sa/orders';
const CLIENT_ID = 'spiffe://example.org/ns/prod/sa/client';

const POLICY = {
  version: 1,
  rules: [
    { name: 'no-admin-reads', effect: 'deny', methods: ['GET'], path: { prefix: '/admin' } },
    { name: 'client-reads', effect: 'allow', methods: ['GET'], path: { prefix: '/v1' }, callers: { ids: [CLIENT_ID] } },
    { name: 'client-administers', effect: 'allow', path: { prefix: '/admin' }, callers: { ids: [CLIENT_ID] } },
    { name: 'partner-reads', effect: 'allow', callers: { api_keys: ['partner'] } },
  ],
};

const ws = useWorkspace();
let sidecar: TestSidecar;
let client: IssuedCertificate;
const partner = apiKey('partner', 'route=GET:/v1/**');

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  await mkdir(join(ws.path, 'certs'));
  const serving = await writeServingFiles(join(ws.path, 'certs'), await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  client = await issueSvid(ca, { id: CLIENT_ID });
  const keys = join(ws.path, 'keys.txt');
  await writeFile(keys, `${partner.line}\n`);
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    'mtls-cert-file': serving.certFile,
    'mtls-key-file': serving.keyFile,
    'mtls-ca-file': serving.caFile,
    'policy-file': await writePolicy(ws.path, 'policy.json', POLICY),
    'api-keys-file': keys,
  });
});
afterAll(() => sidecar?.close());

/** One HTTP/2 request; resolves with the status once the stream ends. */
async function h2Status(method: string, path: string): Promise<number> {
  const session = http2.connect(`https://127.0.0.1:${sidecar.port}`, {
    cert: client.chainPem,
    key: client.keyPem,
    rejectUnauthorized: false,
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':method': method, ':path': path });
      let status = 0;
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('error', reject);
      stream.on('end', () => resolve(status));
      stream.resume();
      stream.end();
    });
  } finally {
    session.close();
  }
}

describe('HEAD is judged by the rules for GET', () => {
  it('a deny of GET refuses HEAD with 403 and the app sees nothing, over HTTP/1.1 and HTTP/2', async () => {
    const seen = ws.app.seen.length;
    for (const path of ['/admin', '/admin/users', '/%61dmin']) {
      expect({ path, status: (await requestVia(sidecar.port, client, { method: 'HEAD', path })).status }).toEqual({
        path,
        status: 403,
      });
      expect({ path, status: await h2Status('HEAD', path) }).toEqual({ path, status: 403 });
    }
    expect(ws.app.seen.length).toBe(seen);
    expect(await lastAudit(sidecar.logs, 'HEAD', '/admin')).toMatchObject({
      decision: 'deny',
      rule: 'no-admin-reads',
      reason: 'rule_denied',
    });
  });

  it('the deny of GET leaves other methods to the later rules', async () => {
    const res = await requestVia(sidecar.port, client, { method: 'POST', path: '/admin/users' });
    expect(res.status).toBe(200);
    expect(ws.app.seen.at(-1)).toMatchObject({ method: 'POST', url: '/admin/users' });
  });

  it('an allow of GET admits HEAD (the app sees the HEAD) and still refuses POST', async () => {
    const head = await requestVia(sidecar.port, client, { method: 'HEAD', path: '/v1/orders' });
    expect(head.status).toBe(200);
    expect(ws.app.seen.at(-1)).toMatchObject({ method: 'HEAD', url: '/v1/orders' });
    expect(await h2Status('HEAD', '/v1/orders')).toBe(200);
    expect(await lastAudit(sidecar.logs, 'HEAD', '/v1/orders')).toMatchObject({
      decision: 'allow',
      rule: 'client-reads',
    });

    const seen = ws.app.seen.length;
    expect((await requestVia(sidecar.port, client, { method: 'POST', path: '/v1/orders' })).status).toBe(403);
    expect(ws.app.seen.length).toBe(seen);
  });

  it('an API key limited to route=GET:/v1/** may send HEAD there, and nothing else', async () => {
    const as = (method: string, path: string) =>
      requestVia(sidecar.port, undefined, { method, path, headers: { 'x-api-key': partner.key } });
    expect((await as('HEAD', '/v1/orders')).status).toBe(200);
    expect(ws.app.seen.at(-1)).toMatchObject({ method: 'HEAD', url: '/v1/orders' });
    const seen = ws.app.seen.length;
    expect((await as('POST', '/v1/orders')).status).toBe(403);
    expect((await as('HEAD', '/healthz')).status).toBe(403);
    expect(ws.app.seen.length).toBe(seen);
    expect(await lastAudit(sidecar.logs, 'HEAD', '/healthz')).toMatchObject({ reason: 'key_route_denied' });
  });
});
