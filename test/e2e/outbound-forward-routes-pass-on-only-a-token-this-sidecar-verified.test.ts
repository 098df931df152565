// auth=forward: the caller's token goes on to the remote unchanged, but only a token this sidecar verified
// (the route's verifyToken, which app.ts gives from the inbound authenticator; here it is composed the same
// way from A's config). A forged or missing token is answered 401 and the remote sees nothing; a sidecar
// that verifies no tokens refuses a forward route at startup.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConfig, type RawOptions } from '../../src/config.js';
import { openJwt } from '../../src/jwt-mode.js';
import { outboundRoute } from '../../src/outbound-routes.js';
import { H2OutboundProxy } from '../../src/proxy/h2-outbound.js';
import { OutboundProxy } from '../../src/proxy/outbound.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { h2cJson } from '../helpers/http2-fixture.js';
import { type OidcIssuer, startOidcIssuer } from '../helpers/oidc-issuer.js';
import { createDevCa, servingOptions, tempDir } from '../helpers/pki.js';
import { type RelayingApp, startRelayingApp } from '../helpers/relaying-app.js';
import { capturingLogger, startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const A = 'spiffe://example.org/ns/shop/sa/checkout';
const B = 'spiffe://example.org/ns/shop/sa/orders';

let dir: { path: string; remove: () => Promise<void> };
let issuer: OidcIssuer;
let appB: EchoApp;
let appA: RelayingApp;
let a: TestSidecar;
let b: TestSidecar;
let forward: OutboundProxy;
let forwardH2: H2OutboundProxy;
const logs = capturingLogger();
const closers: (() => void)[] = [];
let closeJwt: () => Promise<void>;
/** The trust domain's CA: every sidecar of these tests has an SVID of it. */
let ca: Awaited<ReturnType<typeof createDevCa>>;

const svidFiles = (name: string, id: string, authority: Awaited<ReturnType<typeof createDevCa>>) =>
  servingOptions(join(dir.path, name), authority, id);

beforeAll(async () => {
  dir = await tempDir();
  issuer = await startOidcIssuer();
  const caFile = join(dir.path, 'issuer-ca.pem');
  await writeFile(caFile, issuer.caPem);
  ca = await createDevCa({ trustDomain: 'example.org' });
  const tokens = {
    'auth-mode': 'jwt',
    'jwt-audience': ['orders'],
    'jwt-issuer': [`kc=${issuer.url}`],
    'jwt-ca-file': caFile,
    'allow-issuer': ['kc'],
    'jwt-forward-token': true,
  };
  appB = await startEchoApp();
  b = await startTestSidecar({
    upstream: appB.url,
    ...tokens,
    'jwt-transport': 'tls',
    ...(await svidFiles('b', B, ca)),
  });
  appA = await startRelayingApp();
  const aOptions: RawOptions = {
    upstream: appA.url,
    ...tokens,
    ...(await svidFiles('a', A, ca)),
  };
  a = await startTestSidecar(aOptions);
  // A's forward routes, composed as app.ts composes them: verifyToken is A's inbound authenticator.
  const remote = `https://127.0.0.1:${b.port},id=${B},auth=forward`;
  const config = buildConfig({
    ...aOptions,
    listen: '127.0.0.1:0',
    outbound: [`127.0.0.1:0=${remote}`, `127.0.0.1:0=${remote},protocol=h2`],
  });
  const jwt = await openJwt(config, config.auth.tokens!, logs.log);
  closeJwt = () => jwt.close();
  const verifyToken = async (authorization: string) => (await jwt.authenticator.authenticate(authorization)).ok;
  forward = await OutboundProxy.start(
    outboundRoute(config.outbound[0], config, a.identity, logs.log, closers, { verifyToken }),
    a.identity,
    logs.log,
  );
  forwardH2 = await H2OutboundProxy.start(
    outboundRoute(config.outbound[1], config, a.identity, logs.log, closers, { verifyToken }),
    a.identity,
    logs.log,
  );
  appA.outboundPort = forward.address().port;
});
afterAll(async () => {
  await forward.close();
  await forwardH2.close();
  for (const close of closers) close();
  await closeJwt();
  await a.close();
  await b.close();
  await appA.close();
  await appB.close();
  await issuer.close();
  await dir.remove();
});

/** A token that claims to be the issuer's, signed with another key under the issuer's kid. */
async function forged(sub: string): Promise<string> {
  const { kid } = decodeProtectedHeader(await issuer.sign({ sub }));
  const { privateKey } = await generateKeyPair('ES256');
  return new SignJWT({ sub })
    .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
    .setIssuer(issuer.url)
    .setAudience('orders')
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(privateKey);
}

async function direct(authorization: string | undefined) {
  const res = await fetch(`http://127.0.0.1:${forward.address().port}/orders/1`, {
    headers: authorization ? { authorization } : {},
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const h2Status = (authorization: string) => h2cJson(forwardH2.address().port, { ':path': '/orders/2', authorization });

describe('forward routes pass on only a token this sidecar verified', () => {
  it('the user’s token, verified by A, reaches B unchanged; B admits it and app B sees the user', async () => {
    const alice = await issuer.sign({ sub: 'alice' });
    const res = await fetch(`http://127.0.0.1:${a.port}/orders/1`, { headers: { authorization: `Bearer ${alice}` } });
    expect(res.status).toBe(200);
    const seen = ((await res.json()) as { headers: Record<string, string> }).headers;
    expect(seen.authorization).toBe(`Bearer ${alice}`);
    expect(seen['x-jwt-subject']).toBe('alice');
    const h2 = await h2Status(`Bearer ${alice}`);
    expect(h2.status).toBe(200);
    expect((h2.body.headers as Record<string, string>).authorization).toBe(`Bearer ${alice}`);
  });

  it('a forged token is 401 subject_token_invalid, a missing one subject_token_missing; B sees nothing', async () => {
    const seenByB = appB.seen.length;
    const fake = await forged('alice');
    expect(await direct(`Bearer ${fake}`)).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'subject_token_invalid' },
    });
    expect(await direct(undefined)).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'subject_token_missing' },
    });
    expect((await direct(`Bearer ${await issuer.sign({ sub: 'eve' }, { audience: 'elsewhere' })}`)).status).toBe(401);
    expect((await h2Status(`Bearer ${fake}`)).body.reason).toBe('subject_token_invalid');
    expect(appB.seen.length).toBe(seenByB);
    expect(logs.logs.filter((l) => l.event === 'outbound_rejected').map((l) => l.reason)).toEqual([
      'subject_token_invalid',
      'subject_token_missing',
      'subject_token_invalid',
      'subject_token_invalid',
    ]);
  });

  it('as app.ts wires it: a sidecar started with a forward route passes on a token it verifies, not a forged one', async () => {
    const c = await startTestSidecar({
      upstream: appB.url,
      'auth-mode': 'jwt',
      'jwt-audience': ['orders'],
      'jwt-issuer': [`kc=${issuer.url}`],
      'jwt-ca-file': join(dir.path, 'issuer-ca.pem'),
      'allow-issuer': ['kc'],
      'jwt-transport': 'tls',
      ...(await svidFiles('d', A, ca)),
      outbound: [`127.0.0.1:0=https://127.0.0.1:${b.port},id=${B},auth=forward`],
    });
    try {
      const out = c.outboundAddresses()[0].port;
      const bob = await issuer.sign({ sub: 'bob' });
      const ok = await fetch(`http://127.0.0.1:${out}/orders/3`, { headers: { authorization: `Bearer ${bob}` } });
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { headers: Record<string, string> }).headers['x-jwt-subject']).toBe('bob');
      const bad = await fetch(`http://127.0.0.1:${out}/orders/3`, {
        headers: { authorization: `Bearer ${await forged('bob')}` },
      });
      expect([bad.status, ((await bad.json()) as { reason: string }).reason]).toEqual([401, 'subject_token_invalid']);
    } finally {
      await c.close();
    }
  });

  it('a sidecar that verifies no tokens refuses a forward route at startup, saying why', async () => {
    const ca = await createDevCa({ trustDomain: 'example.org' });
    await expect(
      startTestSidecar({
        ...(await svidFiles('c', A, ca)),
        outbound: [`127.0.0.1:0=https://127.0.0.1:${b.port},id=${B},auth=forward`],
      }),
    ).rejects.toMatchObject({ code: 'ERR_CONFIG_INVALID', message: expect.stringMatching(/auth=forward .*verif/) });
  });
});
