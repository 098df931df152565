// Issue 18's limits, over real TLS on loopback: a certificate-bound token (RFC 8705 cnf.x5t#S256) is admitted
// only over the connection whose certificate it names; with --jwt-replay-cache a token's jti is admitted once;
// --max-token-lifetime refuses tokens that live longer; and a keep-alive connection does not outlive its
// client certificate (HTTP/1.1: closed at notAfter; HTTP/2: GOAWAY).
import { createHash, X509Certificate } from 'node:crypto';
import * as http2 from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { waitForLog } from '../helpers/authz.js';
import { requestVia, type Response } from '../helpers/client.js';
import { createDevCa, issueSvid, mtlsFileOptions, type ServingFiles, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { type JwtSvidKeys, jwtSvidKeys } from '../helpers/jwt-svid-keys.js';
import { useWorkspace } from '../helpers/workspace.js';

const AUDIENCE = 'sandboxes';
const AGENT_ID = 'spiffe://example.org/agent/a-1';
const ws = useWorkspace();
let ca: CertificateAuthority;
let serving: ServingFiles;
let agent: IssuedCertificate;
let other: IssuedCertificate;
let keys: JwtSvidKeys;
let sidecar: TestSidecar;

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: 'example.org' });
  serving = await writeServingFiles(ws.path, await issueSvid(ca, { id: 'spiffe://example.org/api' }), ca.certPem);
  agent = await issueSvid(ca, { id: AGENT_ID });
  other = await issueSvid(ca, { id: 'spiffe://example.org/agent/a-2' });
  keys = await jwtSvidKeys(ws.path);
  sidecar = await startTestSidecar({
    upstream: ws.app.url,
    ...mtlsFileOptions(serving),
    allow: ['spiffe://example.org/**'],
    'jwt-audience': [AUDIENCE],
    'jwt-bundle-file': [`example.org=${keys.file}`],
    'jwt-replay-cache': '1000',
    'max-token-lifetime': '1h',
  });
});
afterAll(() => sidecar?.close());

const token = (claims: Record<string, unknown> = {}, lifetime = '5m') =>
  keys.sign('spiffe://example.org/worker', AUDIENCE, claims, lifetime);

const thumbprint = (cert: IssuedCertificate) =>
  createHash('sha256').update(new X509Certificate(cert.certPem).raw).digest('base64url');
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const reason = (res: Response) => (JSON.parse(res.body) as { reason: string }).reason;
const auth = (res: Response) => (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-auth-method'];

describe('tokens bound to a certificate, used once, or living too long', () => {
  it('a token bound to the agent certificate is admitted over it, and refused over another or over none', async () => {
    const bound = await token({ cnf: { 'x5t#S256': thumbprint(agent) } });
    const ok = await requestVia(sidecar.port, agent, { path: '/x', headers: bearer(bound) });
    expect([ok.status, auth(ok)]).toEqual([200, 'jwt-svid']);
    for (const cert of [other, undefined]) {
      const res = await requestVia(sidecar.port, cert, { path: '/x', headers: bearer(bound) });
      expect([res.status, reason(res)]).toEqual([401, 'ERR_JWT_CNF_MISMATCH']);
    }
  });

  it('with --jwt-replay-cache a jti is admitted once; a token without jti is not limited', async () => {
    const once = await token({ jti: 'one-time-1' });
    expect((await requestVia(sidecar.port, undefined, { path: '/x', headers: bearer(once) })).status).toBe(200);
    const again = await requestVia(sidecar.port, undefined, { path: '/x', headers: bearer(once) });
    expect([again.status, reason(again)]).toEqual([401, 'ERR_JWT_REPLAYED']);
    const plain = await token();
    for (let i = 0; i < 2; i++)
      expect((await requestVia(sidecar.port, undefined, { path: '/x', headers: bearer(plain) })).status).toBe(200);
  });

  it('--max-token-lifetime 1h refuses a token that lives two hours', async () => {
    const res = await requestVia(sidecar.port, undefined, { path: '/x', headers: bearer(await token({}, '2h')) });
    expect([res.status, reason(res)]).toEqual([401, 'ERR_JWT_LIFETIME']);
  });
});

describe('a connection ends with its client certificate', () => {
  // Long enough for the handshake on a busy machine; the tests wait for the close, never for the clock.
  const LIFETIME_MS = 6000;

  /**
   * One HTTP/1.1 request over a kept-alive TLS connection (with `cert`, or none): resolves once the answer was
   * 200 and the sidecar has closed the connection.
   */
  async function answeredThenClosed(cert: IssuedCertificate | undefined, extraFields = '') {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: sidecar.port,
      cert: cert?.chainPem,
      key: cert?.keyPem,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
    socket.write(`GET /x HTTP/1.1\r\nhost: sandbox\r\n${extraFields}\r\n`);
    await expect.poll(() => received, { timeout: 10_000 }).toContain('HTTP/1.1 200');
    await closed;
  }

  it('HTTP/1.1: a keep-alive connection is closed at notAfter, and the close is logged', async () => {
    const short = await issueSvid(ca, { id: AGENT_ID, lifetimeMs: LIFETIME_MS });
    const from = sidecar.logs.length;
    await answeredThenClosed(short);
    await waitForLog(sidecar.logs, { event: 'connection_expired', by: 'certificate' }, from);
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(new X509Certificate(short.certPem).validTo));
  });

  it("HTTP/1.1 without a certificate: a connection admitted by a token is closed at the token's exp", async () => {
    const from = sidecar.logs.length;
    const shortToken = await token({}, '6s');
    const exp = (JSON.parse(Buffer.from(shortToken.split('.')[1], 'base64url').toString()) as { exp: number }).exp;
    await answeredThenClosed(undefined, `authorization: Bearer ${shortToken}\r\n`);
    await waitForLog(sidecar.logs, { event: 'connection_expired', by: 'token' }, from);
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
  });

  it('HTTP/2: the session gets GOAWAY at notAfter', async () => {
    const short = await issueSvid(ca, { id: AGENT_ID, lifetimeMs: LIFETIME_MS });
    const session = http2.connect(`https://127.0.0.1:${sidecar.port}`, {
      cert: short.chainPem,
      key: short.keyPem,
      rejectUnauthorized: false,
    });
    session.on('error', () => {});
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    const stream = session.request({ ':path': '/x' });
    const status = await new Promise<number>((resolve) =>
      stream.once('response', (h) => resolve(Number(h[':status']))),
    );
    stream.resume();
    expect(status).toBe(200);
    await goaway;
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(new X509Certificate(short.certPem).validTo));
    session.destroy();
  });
});
