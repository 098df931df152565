// HTTP/2 edge cases a security review found, kept as regressions: a caller that resets its stream at once
// (RST_STREAM INTERNAL_ERROR) must not take the process down; an app response HTTP/2 cannot carry (a
// repeated single-value field, a status over 599) becomes 502 for HTTP/2 callers; a lower-case `:method`
// cannot slip past a method rule; an API key in a second Authorization field never reaches the app.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import * as http2 from 'node:http2';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../../src/authn/api-keys.js';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { openRaw, requestVia } from '../helpers/client.js';
import { createDevCa, issueSvid, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let dir: { path: string; remove: () => Promise<void> };
let app: Server;
const seen: IncomingMessage[] = [];
let client: IssuedCertificate;
let sidecar: TestSidecar;
const key = newApiKey();

beforeAll(async () => {
  dir = await tempDir();
  app = createServer((req, res) => {
    seen.push(req);
    req.resume();
    if (req.url === '/twice') {
      res.writeHead(
        200,
        [
          ['content-type', 'text/plain'],
          ['content-type', 'text/html'],
        ].flat(),
      );
      res.end('x');
    } else if (req.url === '/status-600') {
      res.writeHead(600);
      res.end('x');
    } else res.end('ok');
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const files = await writeServingFiles(
    dir.path,
    await issueSvid(ca, { id: 'spiffe://example.org/server' }),
    ca.certPem,
  );
  client = await issueSvid(ca, { id: 'spiffe://example.org/client' });
  const policy = join(dir.path, 'policy.yaml');
  await writeFile(
    policy,
    'version: 1\nrules:\n  - { name: no-delete, effect: deny, methods: [DELETE] }\n  - { name: everyone, effect: allow }\n',
  );
  const keys = join(dir.path, 'keys');
  await writeFile(keys, `sha256:${key.sha256} partner\n`);
  sidecar = await startTestSidecar({
    upstream: `http://127.0.0.1:${(app.address() as { port: number }).port}`,
    'mtls-cert-file': files.certFile,
    'mtls-key-file': files.keyFile,
    'mtls-ca-file': files.caFile,
    'policy-file': policy,
    'api-keys-file': keys,
  });
});

afterAll(async () => {
  await sidecar?.close();
  await new Promise<void>((resolve) => app.close(() => resolve()));
  await dir?.remove();
});

function h2(): http2.ClientHttp2Session {
  const session = http2.connect(`https://127.0.0.1:${sidecar.port}`, {
    cert: client.chainPem,
    key: client.keyPem,
    rejectUnauthorized: false,
  });
  session.on('error', () => {});
  return session;
}

function get(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: true });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', reject);
    req.resume();
  });
}

describe('hostile HTTP/2 callers and odd app responses cannot crash or bypass the sidecar', () => {
  it('a stream reset right after its headers (RST_STREAM INTERNAL_ERROR) leaves the sidecar serving', async () => {
    const session = h2();
    const resets: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      const req = session.request({ ':path': '/', ':method': 'GET' }, { endStream: true });
      req.on('error', () => {});
      resets.push(new Promise((resolve) => req.once('close', resolve)));
      req.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
    // Every RST_STREAM has gone out; a request on the same connection comes after them, so its answer
    // proves the sidecar has taken all 20 resets and goes on serving.
    await Promise.all(resets);
    expect(await get(session, { ':path': '/', ':method': 'GET' })).toBe(200);
    session.close();
  });

  it('an app response HTTP/2 cannot carry is a 502 for HTTP/2 callers, and passes for HTTP/1.1 ones', async () => {
    const session = h2();
    expect(await get(session, { ':path': '/twice' })).toBe(502);
    expect(await get(session, { ':path': '/status-600' })).toBe(502);
    expect(await get(session, { ':path': '/' })).toBe(200);
    session.close();
    expect((await requestVia(sidecar.port, client, { path: '/twice' })).status).toBe(200);
  });

  it('a lower-case :method is refused, not matched past a DELETE rule', async () => {
    const session = h2();
    const before = seen.length;
    expect(await get(session, { ':path': '/x', ':method': 'DELETE' })).toBe(403);
    expect(await get(session, { ':path': '/x', ':method': 'delete' })).toBe(400);
    expect(await get(session, { ':path': '/x', ':method': 'dElEtE' })).toBe(400);
    expect(seen.length).toBe(before);
    session.close();
  });

  it('a host field that disagrees with :authority is a malformed request (400)', async () => {
    const session = h2();
    const before = seen.length;
    expect(await get(session, { ':path': '/', ':authority': 'a.example', host: 'b.example' })).toBe(400);
    expect(await get(session, { ':path': '/', ':authority': 'a.example', host: 'a.example' })).toBe(200);
    expect(seen.length).toBe(before + 1);
    session.close();
  });

  it('an API key in a second Authorization field never reaches the app', async () => {
    const before = seen.length;
    const raw = await openRaw(sidecar.port, client);
    raw.socket.write(
      `GET /keys HTTP/1.1\r\nhost: x\r\nauthorization: Basic dXNlcjpwdw==\r\nauthorization: Bearer ${key.key}\r\nconnection: close\r\n\r\n`,
    );
    await new Promise((resolve) => raw.socket.once('close', resolve));
    // Authorization is a singleton field: two are a malformed request, and nothing reaches the app.
    expect(raw.received()).toMatch(/^HTTP\/1\.1 400/);
    expect(raw.received()).toContain('duplicate_authorization');
    expect(seen.length).toBe(before);
  });
});
