// A local OIDC issuer whose answers a test scripts: real HTTPS with its own CA, discovery, and a JWKS
// document the test can replace with anything (an empty set, keys nobody can use); it signs real tokens
// with any header `typ` and any claims, including ones a well-behaved issuer would never send.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { createDevCa, issueCertificate } from '../../src/certs/dev-ca.js';

export interface ScriptableIssuer {
  url: string;
  caPem: string;
  /** The public JWKS of the signing key, as served by default. */
  readonly goodJwks: { keys: Record<string, unknown>[] };
  /** What `/keys` answers from now on (any JSON value); `undefined` restores `goodJwks`. */
  serve(document: unknown): void;
  /** Resolves at the next JWKS fetch after this call, once it has been answered. */
  nextFetch(): Promise<void>;
  sign(claims: JWTPayload, header?: { typ?: string; kid?: string }): Promise<string>;
  close(): Promise<void>;
}

export async function startScriptableIssuer(): Promise<ScriptableIssuer> {
  const ca = await createDevCa({ trustDomain: 'scripted-issuer.test' });
  const tls = await issueCertificate(ca, { dnsNames: ['localhost'], keyUsage: 1, extKeyUsage: ['1.3.6.1.5.5.7.3.1'] });
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = 'scripted-1';
  const goodJwks = { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] };
  let document: unknown = goodJwks;
  let waiters: (() => void)[] = [];
  let url = '';
  const server: Server = createServer({ cert: tls.chainPem, key: tls.keyPem }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      res.end(JSON.stringify({ issuer: url, jwks_uri: `${url}/keys` }));
    } else if (req.url === '/keys') {
      const answered = waiters;
      waiters = [];
      res.end(JSON.stringify(document), () => {
        for (const w of answered) w();
      });
    } else {
      res.writeHead(404).end('{}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://localhost:${(server.address() as AddressInfo).port}`;
  return {
    url,
    caPem: ca.certPem,
    goodJwks,
    serve(next) {
      document = next === undefined ? goodJwks : next;
    },
    nextFetch: () => new Promise<void>((resolve) => waiters.push(resolve)),
    sign(claims, header = {}) {
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: header.kid ?? kid, ...('typ' in header ? { typ: header.typ } : {}) })
        .setIssuer(url)
        .setAudience('orders')
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(privateKey);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
