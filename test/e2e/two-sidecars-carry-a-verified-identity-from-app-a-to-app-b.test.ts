// Outbound mode: app A calls its own sidecar in plain HTTP on loopback; A's sidecar calls B's sidecar
// with A's identity (mTLS, or a JWT-SVID); app B receives A's verified SPIFFE ID. A remote that is not
// who the route expects is refused, and rotating A's SVID mid-run fails no call.
import { mkdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { auditsAtLeast } from '../helpers/authz.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { startSpireTestSidecar, startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';

const A = 'spiffe://example.org/ns/shop/sa/a';
const B = 'spiffe://example.org/ns/shop/sa/b';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let appB: EchoApp;
let b: TestSidecar;
const sidecars: TestSidecar[] = [];

async function svidFiles(name: string, svid: IssuedCertificate) {
  const d = join(dir.path, name);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'tls.crt'), svid.chainPem);
  await writeFile(join(d, 'tls.key'), svid.keyPem);
  await writeFile(join(d, 'ca.crt'), ca.certPem);
  return {
    'mtls-cert-file': join(d, 'tls.crt'),
    'mtls-key-file': join(d, 'tls.key'),
    'mtls-ca-file': join(d, 'ca.crt'),
  };
}

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  appB = await startEchoApp();
  b = await startTestSidecar({
    upstream: appB.url,
    ...(await svidFiles('b', await issueSvid(ca, { id: B }))),
    allow: [A],
    'idle-timeout': '1s',
  });
});
afterAll(async () => {
  for (const s of sidecars) await s.close();
  await b.close();
  await appB.close();
  await dir.remove();
});

async function sidecarA(route: string, name = 'a', extra: Record<string, unknown> = {}) {
  const s = await startTestSidecar({
    ...(await svidFiles(name, await issueSvid(ca, { id: A }))),
    outbound: [route],
    ...extra,
  });
  sidecars.push(s);
  return s;
}

async function callVia(s: Pick<TestSidecar, 'outboundAddresses'>, path = '/hello') {
  const res = await fetch(`http://127.0.0.1:${s.outboundAddresses()[0].port}${path}`, {
    headers: { 'x-spiffe-id': 'spiffe://example.org/admin' },
  });
  return { status: res.status, body: await res.text() };
}

describe('two sidecars carry a verified identity from app A to app B', () => {
  it('mTLS: app B receives A’s verified SPIFFE ID', async () => {
    const a = await sidecarA(`127.0.0.1:0=https://127.0.0.1:${b.port},id=${B}`);
    const res = await callVia(a, '/orders/1');
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body);
    expect(seen.url).toBe('/orders/1');
    expect(seen.headers['x-spiffe-id']).toBe(A);
    expect(seen.headers['x-forwarded-client-cert']).toContain(`By=${B};`);
    expect(seen.headers.host).toBe(`127.0.0.1:${b.port}`);
  });

  it('an upload that lasts longer than --upstream-timeout is answered: the wait is counted from its end', async () => {
    const a = await sidecarA(`127.0.0.1:0=https://127.0.0.1:${b.port},id=${B}`, 'a-upload', {
      'upstream-timeout': '1s',
    });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: a.outboundAddresses()[0].port, method: 'POST', path: '/upload' },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      let sent = 0;
      const tick = setInterval(() => {
        req.write('x'.repeat(1024));
        if (++sent === 8) {
          clearInterval(tick);
          req.end();
        }
      }, 250);
    });
    expect(status).toBe(200);
    expect(appB.seen.at(-1)?.bodyLength).toBe(8 * 1024);
  });

  it('a remote that is not who the route expects is refused before a byte is sent', async () => {
    const seen = appB.seen.length;
    const a = await sidecarA(
      `127.0.0.1:0=https://127.0.0.1:${b.port},id=spiffe://example.org/ns/shop/sa/payments`,
      'a2',
    );
    const res = await callVia(a);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toEqual({ error: 'bad_gateway', reason: 'remote_identity_mismatch' });
    expect(a.logs.some((l) => l.event === 'outbound_rejected' && l.reason === 'remote_identity_mismatch')).toBe(true);
    expect(appB.seen.length).toBe(seen);
    // B saw a TLS connection that sent nothing and closed: no request, no authorization decision.
    // (Each earlier request's access line is written when its exchange is over: those are waited for.)
    expect((await auditsAtLeast(b.logs, seen)).length).toBe(seen);
  });

  it('a route listening off loopback is refused at startup', async () => {
    await expect(sidecarA(`0.0.0.0:0=https://127.0.0.1:${b.port},id=${B}`, 'a3')).rejects.toMatchObject({
      code: 'ERR_CONFIG_INVALID',
    });
  });

  it('rotating A’s SVID mid-run fails no call; new connections present the new certificate', async () => {
    const a = await sidecarA(`127.0.0.1:0=https://127.0.0.1:${b.port},id=${B}`, 'a4');
    const failures: string[] = [];
    let ok = 0;
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const res = await callVia(a).catch((e: Error) => ({ status: 0, body: e.message }));
        if (res.status === 200) ok++;
        else failures.push(`${res.status} ${res.body}`);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    const rotations: IssuedCertificate[] = [];
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const next = await issueSvid(ca, { id: A });
      rotations.push(next);
      await svidFiles('a4', next);
      expect((await a.identity!.reload('test')).outcome).not.toBe('failed');
    }
    stop = true;
    await Promise.all(workers);
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(50);
    // B closes idle keep-alive connections after 1 s; a call after that opens a new one with the new SVID. Asked
    // again after each 1.5 s of quiet until it does, rather than once after a fixed wait: on a busy machine A may
    // not yet have seen B's close of the connection it then reuses.
    const { createHash } = await import('node:crypto');
    const last = rotations.at(-1) as IssuedCertificate;
    const der = Buffer.from(last.certPem.replace(/-----[A-Z ]+-----|\s+/g, ''), 'base64');
    await expect
      .poll(async () => JSON.parse((await callVia(a)).body).headers['x-forwarded-client-cert'], {
        interval: 1500,
        timeout: 20_000,
      })
      .toContain(`Hash=${createHash('sha256').update(der).digest('hex')}`);
  }, 30_000);

  it('JWT: A’s sidecar attaches a JWT-SVID from the Workload API; B in JWT mode verifies it', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwks = join(dir.path, 'example.org.jwks.json');
    await writeFile(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', use: 'jwt-svid' }] }));
    const appB2 = await startEchoApp();
    const b2 = await startTestSidecar({
      upstream: appB2.url,
      allow: [A],
      'auth-mode': 'jwt',
      'jwt-audience': ['b'],
      'jwt-bundle-file': [`example.org=${jwks}`],
    });
    const api = await TestWorkloadApi.start(join(dir.path, 'agent.sock'));
    const signed = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
      .setSubject(A)
      .setAudience('b')
      .setExpirationTime('5m')
      .sign(privateKey);
    api.jwtSvids = (audience) => (audience.includes('b') ? [{ spiffe_id: A, svid: signed, hint: '' }] : []);
    const a = await startSpireTestSidecar({
      'workload-api-socket': api.address,
      outbound: [`127.0.0.1:0=http://127.0.0.1:${b2.port},auth=jwt,audience=b`],
    });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await callVia(a);
        expect(res.status).toBe(200);
        const seen = JSON.parse(res.body).headers;
        expect(seen['x-spiffe-id']).toBe(A);
        expect(seen.authorization).toBeUndefined();
      }
      // One JWT-SVID fetch serves many calls (cached until half its lifetime).
      expect(api.calls.filter((c) => c.method === 'FetchJWTSVID')).toHaveLength(1);
      expect(api.calls.every((c) => c.header[0] === 'true')).toBe(true);
    } finally {
      await a.close();
      await b2.close();
      await appB2.close();
      await api.close();
    }
  });
});
