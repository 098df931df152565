// A local OIDC issuer for tests: real HTTPS with its own CA, OIDC discovery and a JWKS that can rotate,
// go down and come back; it signs real tokens (jose).
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { createDevCa, issueCertificate } from '../../src/certs/dev-ca.js';

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  jwk: Record<string, unknown>;
}

export interface OidcIssuer {
  url: string;
  caPem: string;
  /** JWKS fetches seen. */
  fetches: number;
  up: boolean;
  rotate(): Promise<void>;
  sign(claims: JWTPayload, options?: { kid?: string; audience?: string | string[]; issuer?: string }): Promise<string>;
  close(): Promise<void>;
}

let counter = 0;

async function newKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `key-${++counter}`;
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

export async function startOidcIssuer(): Promise<OidcIssuer> {
  const ca = await createDevCa({ trustDomain: 'issuer.test' });
  const tls = await issueCertificate(ca, { dnsNames: ['localhost'], keyUsage: 1, extKeyUsage: ['1.3.6.1.5.5.7.3.1'] });
  let keys = [await newKey()];
  const state = { fetches: 0, up: true };
  let url = '';
  const server: Server = createServer({ cert: tls.chainPem, key: tls.keyPem }, (req, res) => {
    if (!state.up) {
      res.writeHead(503).end();
      return;
    }
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      res.end(JSON.stringify({ issuer: url, jwks_uri: `${url}/keys` }));
    } else if (req.url === '/keys') {
      state.fetches++;
      res.end(JSON.stringify({ keys: keys.map((k) => k.jwk) }));
    } else {
      res.writeHead(404).end('{}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://localhost:${(server.address() as AddressInfo).port}`;
  return {
    url,
    caPem: ca.certPem,
    get fetches() {
      return state.fetches;
    },
    get up() {
      return state.up;
    },
    set up(value: boolean) {
      state.up = value;
    },
    async rotate() {
      keys = [await newKey()];
    },
    async sign(claims, options = {}) {
      // An unknown kid still signs with the current key: for key-miss tests.
      const key = keys.find((k) => k.kid === options.kid) ?? keys[0];
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? key.kid, typ: 'JWT' })
        .setIssuer(options.issuer ?? url)
        .setAudience(options.audience ?? 'orders')
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(key.privateKey);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
