// The flags of one port, every caller: how mTLS mode takes tokens, how JWT mode asks for a certificate, and
// each combination that cannot work refused at startup with one line that names the flag and the fix.
import { describe, expect, it } from 'vitest';
import { buildConfig, type RawOptions } from '../../src/config.js';
import { configRefusal, FILE_MODE } from '../helpers/config.js';

const TOKENS: RawOptions = { 'jwt-audience': ['orders'], 'jwt-issuer': ['keycloak=https://kc.example.org'] };
const BASE: RawOptions = { ...FILE_MODE, allow: ['spiffe://example.org/client'] };
const refusal = (options: RawOptions) => configRefusal({ ...BASE, ...options }).message;

describe('one port, every caller: the flags', () => {
  it('mTLS mode with --jwt-audience takes tokens too; --allow-issuer alone is then an allow rule', () => {
    const config = buildConfig({ ...FILE_MODE, ...TOKENS, 'allow-issuer': ['keycloak'] });
    expect(config.auth).toMatchObject({ mode: 'mtls', transport: 'mtls', tokens: { audience: ['orders'] } });
    expect(buildConfig(BASE).auth).toEqual({ mode: 'mtls', transport: 'mtls', tokens: undefined });
  });

  it('JWT mode asks for a certificate with --jwt-transport mtls', () => {
    const config = buildConfig({ ...BASE, ...TOKENS, 'auth-mode': 'jwt', 'jwt-transport': 'mtls' });
    expect(config.auth).toMatchObject({ mode: 'jwt', transport: 'mtls' });
  });

  it.each([
    [{ 'jwt-issuer': ['kc=https://kc.example.org'] }, /--jwt-issuer needs --jwt-audience/],
    [{ 'k8s-token-review-only': true }, /--k8s-token-review-only needs --jwt-audience/],
    [{ 'max-token-lifetime': '24h' }, /--max-token-lifetime needs --jwt-audience/],
    [{ 'jwt-transport': 'tls' }, /--jwt-transport needs --auth-mode jwt/],
    [
      { 'auth-mode': 'jwt', ...TOKENS, 'jwt-transport': 'mutual' },
      /--jwt-transport "mutual": use plain, tls .*or mtls/,
    ],
    [{ ...TOKENS, 'jwt-replay-cache': '100', workers: '2' }, /--jwt-replay-cache with --workers 2/],
    [{ ...TOKENS, 'jwt-replay-cache': '0' }, /--jwt-replay-cache/],
    [{ 'claim-header': ['roles=x-roles'] }, /--claim-header roles=x-roles: claims come from bearer tokens/],
    [{ ...TOKENS, 'claim-header': ['sub=x-spiffe-id'] }, /"x-spiffe-id" is set by --identity-header/],
    [{ ...TOKENS, 'claim-header': ['sub=x-auth-method'] }, /"x-auth-method" is set by the sidecar/],
    [{ ...TOKENS, 'claim-header': ['sub=x_spiffe_id'] }, /--claim-header sub=x_spiffe_id: .*"_"/],
    [{ ...TOKENS, 'claim-header': ['a=x-who', 'b=x-who'] }, /"x-who" is set by --claim-header/],
    [{ 'identity-assertion-ttl': '30s' }, /--identity-assertion-ttl needs --identity-assertion/],
    [{ 'identity-assertion': true, 'identity-assertion-ttl': '2h' }, /whole seconds from 1s to 1h/],
    [{ 'identity-assertion': true, 'identity-assertion-header': 'x-spiffe-id' }, /is set by --identity-header/],
    [
      {
        ...TOKENS,
        'jwt-issuer': ['k8s=https://k8s.example'],
        'jwt-jwks': ['k8s=/keys.json'],
        'k8s-token-review-only': true,
      },
      /--k8s-token-review-only verifies .* without the issuer's keys/,
    ],
    [{ ...TOKENS, 'k8s-api-ca-file': '/ca.pem' }, /--k8s-api-ca-file needs --k8s-token-review/],
    [
      {
        outbound: [
          '127.0.0.1:15001=https://o.example:8443,id=spiffe://example.org/o,auth=token-exchange,token-endpoint=https://idp.example/t,client-id=c,client-auth=mtls',
        ],
      },
      /auth=token-exchange needs audience= or resource=/,
    ],
  ] as [RawOptions, RegExp][])('%o is refused', (options, message) => {
    expect(refusal(options)).toMatch(message);
  });

  it('--jwt-jwks takes an https:// URL (any case) or a file; another scheme is refused, not read as a file', () => {
    const jwks = (where: string) =>
      buildConfig({ ...BASE, ...TOKENS, 'jwt-jwks': [`keycloak=${where}`] }).auth.tokens?.issuers.find(
        (i) => i.name === 'keycloak',
      )?.jwks;
    expect(jwks('https://kc.example.org/keys')).toEqual({ url: 'https://kc.example.org/keys' });
    expect(jwks('HTTPS://kc.example.org/keys')).toEqual({ url: 'https://kc.example.org/keys' });
    expect(jwks('/etc/keys.json')).toEqual({ file: '/etc/keys.json' });
    for (const where of ['http://kc.example.org/keys', 'htps://kc.example.org/keys', 'file:///etc/keys.json']) {
      expect(refusal({ ...TOKENS, 'jwt-jwks': [`keycloak=${where}`] })).toMatch(
        /^--jwt-jwks keycloak=.*: keys are fetched over https:\/\/ only \(or give a FILE path\)/,
      );
    }
  });

  it('JWT mode over plain HTTP without an identity needs the assertion audience', () => {
    const plain: RawOptions = {
      upstream: 'http://127.0.0.1:8080',
      listen: '127.0.0.1:8000',
      'auth-mode': 'jwt',
      ...TOKENS,
      'allow-issuer': ['keycloak'],
      'identity-assertion': true,
    };
    expect(configRefusal(plain).message).toMatch(/--identity-assertion needs --identity-assertion-audience/);
    expect(buildConfig({ ...plain, 'identity-assertion-audience': 'orders' }).identityAssertion).toEqual({
      header: 'x-identity-assertion',
      audience: 'orders',
      ttlSeconds: 60,
    });
  });
});
