// --jwt-transport tls (our SVID, no client certificate), --jwt-forward-token, configurable issuer and
// subject headers, and RFC 6750 Bearer parsing.
import { request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

let s: Scenario;
let issuer: OidcIssuer;
let sidecar: TestSidecar;

beforeAll(async () => {
  s = await startScenario();
  issuer = await startOidcIssuer();
  const ca = join(s.dir, 'issuer-ca.pem');
  await writeFile(ca, issuer.caPem);
  sidecar = await startTestSidecar({
    upstream: s.app.url,
    'mtls-cert-file': s.files.certFile,
    'mtls-key-file': s.files.keyFile,
    'mtls-ca-file': s.files.caFile,
    allow: [ALLOWED_ID],
    'auth-mode': 'jwt',
    'jwt-transport': 'tls',
    'jwt-audience': ['orders'],
    'jwt-issuer': [`ci=${issuer.url}`],
    'jwt-ca-file': ca,
    'allow-issuer': ['ci'],
    'jwt-forward-token': true,
    'jwt-issuer-header': 'x-caller-issuer',
    'jwt-subject-header': 'x-caller',
  });
});
afterAll(async () => {
  await sidecar.close();
  await issuer.close();
  await s.close();
});

/** HTTPS without a client certificate, as a JWT caller connects. */
function get(authorization: string | undefined): Promise<{ status: number; body: string; peerSerial: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: sidecar.port,
        path: '/',
        rejectUnauthorized: false,
        agent: false,
        headers: authorization ? { authorization } : {},
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            peerSerial: (res.socket as TLSSocket).getPeerCertificate().serialNumber ?? '',
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('JWT mode over TLS forwards what it is told and parses Bearer strictly', () => {
  it('serves our SVID without asking for a client certificate; forwards the token and the chosen headers', async () => {
    const token = await issuer.sign({ sub: 'pipeline-7' });
    const res = await get(`Bearer ${token}`);
    expect(res.status).toBe(200);
    expect(res.peerSerial.toLowerCase()).toBe(s.sidecar.identity.current().svid.chain[0].serialNumber);
    const seen = JSON.parse(res.body).headers;
    expect(seen.authorization).toBe(`Bearer ${token}`);
    expect(seen['x-caller-issuer']).toBe('ci');
    expect(seen['x-caller']).toBe('pipeline-7');
    expect(seen['x-jwt-issuer']).toBeUndefined();
  });

  it('accepts the scheme in any case, refuses anything but "Bearer <one token>"', async () => {
    const token = await issuer.sign({ sub: 'pipeline-7' });
    expect((await get(`bearer ${token}`)).status).toBe(200);
    for (const bad of [`Bearer  ${token}`, `Bearer ${token} extra`, `Basic ${token}`, `Bearer`, `Bearer ${token},x`]) {
      const res = await get(bad);
      expect(res.status, bad).toBe(401);
      expect(JSON.parse(res.body).reason).toBe('ERR_JWT_MALFORMED');
    }
  });

  it('strips client-sent issuer and subject headers too', async () => {
    const token = await issuer.sign({ sub: 'pipeline-7' });
    const res = await new Promise<string>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: sidecar.port,
          path: '/',
          rejectUnauthorized: false,
          agent: false,
          headers: { authorization: `Bearer ${token}`, 'x-caller': 'admin', X_Caller_Issuer: 'root' },
        },
        (r) => {
          let body = '';
          r.on('data', (d: Buffer) => {
            body += d.toString();
          });
          r.on('end', () => resolve(body));
        },
      );
      req.on('error', reject);
      req.end();
    });
    const seen = JSON.parse(res).headers;
    expect(seen['x-caller']).toBe('pipeline-7');
    expect(seen['x-caller-issuer']).toBe('ci');
    expect(JSON.stringify(seen)).not.toContain('admin');
    expect(JSON.stringify(seen)).not.toContain('root');
  });
});
