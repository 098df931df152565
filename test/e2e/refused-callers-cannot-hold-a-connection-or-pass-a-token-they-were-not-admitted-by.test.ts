// Hostile callers of a JWT-mode sidecar (no credential needed to reach it): a refused request's connection is
// closed once the answer is written, so trickling a body holds no slot; `Expect: 100-continue` is answered
// only for an admitted caller; and --jwt-forward-token passes on only the token that admitted the request.
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../../src/authn/api-keys.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();
let issuer: OidcIssuer;
let sidecar: TestSidecar;
let token: string;
const key = newApiKey();

beforeAll(async () => {
  issuer = await startOidcIssuer();
  const ca = join(ws.path, 'issuer-ca.pem');
  await writeFile(ca, issuer.caPem);
  const keys = join(ws.path, 'api-keys.txt');
  await writeFile(keys, `sha256:${key.sha256} script\n`);
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    'auth-mode': 'jwt',
    'jwt-audience': ['orders'],
    'jwt-issuer': [`ci=${issuer.url}`],
    'jwt-ca-file': ca,
    'allow-any': true,
    'api-keys-file': keys,
    'jwt-forward-token': true,
    // Two slots: two trickling callers would lock everyone else out if a refusal held its connection.
    'max-connections': '2',
  });
  token = await issuer.sign({ sub: 'repo:shop/orders' });
});
afterAll(async () => {
  await sidecar.close();
  await issuer.close();
});

/** A plain TCP connection to the sidecar (JWT over plain HTTP), with what came back and when it closed. */
async function openPlain() {
  const socket: Socket = connect(sidecar.port, '127.0.0.1');
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let received = '';
  socket.on('data', (d: Buffer) => {
    received += d.toString();
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const arrived = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (received.includes(text)) resolve();
        else if (socket.destroyed) reject(new Error(`closed without ${JSON.stringify(text)}: ${received}`));
        else socket.once('data', check).once('close', check);
      };
      check();
    });
  return { socket, closed, arrived, received: () => received };
}

describe('a refused request holds no connection', () => {
  it('callers without a credential trickling a chunked body get 401 and are closed; a valid caller then gets in', async () => {
    const before = ws.app.seen.length;
    const tricklers = await Promise.all([openPlain(), openPlain()]);
    for (const t of tricklers) {
      t.socket.write('POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
    }
    // The server closes each connection after its 401, though the body never ended.
    await Promise.all(tricklers.map((t) => t.closed));
    for (const t of tricklers) {
      expect(t.received()).toMatch(/^HTTP\/1\.1 401 /);
      expect(t.received().toLowerCase()).toContain('connection: close');
    }
    // Both slots are free again: an admitted caller is served.
    const res = await get({ authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    expect(ws.app.seen.slice(before).map((r) => r.url)).toEqual(['/ok']);
  });

  it('a refused Expect: 100-continue caller gets its 401 and never 100 Continue', async () => {
    const c = await openPlain();
    c.socket.write('POST /upload HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n');
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 401 /);
    expect(c.received()).not.toContain('100 Continue');
  });

  it('an admitted Expect: 100-continue caller is invited, and the app gets the body without the expectation', async () => {
    const before = ws.app.seen.length;
    const c = await openPlain();
    c.socket.write(
      `POST /upload HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\nexpect: 100-continue\r\ncontent-length: 5\r\nconnection: close\r\n\r\n`,
    );
    await c.arrived('HTTP/1.1 100 Continue\r\n\r\n');
    c.socket.write('hello');
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    const seen = ws.app.seen.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0].bodyLength).toBe(5);
    expect(seen[0].headers.expect).toBeUndefined();
  });
});

describe('--jwt-forward-token forwards only the token that admitted the request', () => {
  it('a caller with an API key cannot slip a self-made token to the app: the two together are refused', async () => {
    const forged = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hZG1pbiJ9.';
    const before = ws.app.seen.length;
    const res = await get({ 'x-api-key': key.key, authorization: `Bearer ${forged}` });
    expect([res.status, JSON.parse(res.body).reason]).toEqual([401, 'ERR_CREDENTIALS_AMBIGUOUS']);
    expect(ws.app.seen.length).toBe(before);
    const byKey = await get({ 'x-api-key': key.key });
    expect(byKey.status).toBe(200);
    const headers = JSON.parse(byKey.body).headers as Record<string, string | undefined>;
    expect(headers['x-api-key-name']).toBe('script');
    expect(headers.authorization).toBeUndefined();
  });

  it('a caller admitted by its token has exactly that token forwarded', async () => {
    const res = await get({ authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body).headers as Record<string, string>).authorization).toBe(`Bearer ${token}`);
  });

  it('a second Authorization field is a 400, and the app sees nothing', async () => {
    const before = ws.app.seen.length;
    const c = await openPlain();
    c.socket.write(
      `GET /ok HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\nauthorization: Bearer forged\r\n\r\n`,
    );
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 400 /);
    expect(c.received()).toContain('"reason":"duplicate_authorization"');
    expect(ws.app.seen.length).toBe(before);
  });
});

/** GET /ok over plain HTTP with these headers. */
function get(headers: Record<string, string>) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: sidecar.port, path: '/ok', headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
