// go-spiffe as the reference verifier of what our dev commands make: `spiffe-sidecar certs init` + `certs issue`
// SVIDs through x509svid.Verify and x509svid.Parse (and, since the CLI issues directly under the root, an SVID
// under an intermediate from the same dev CA code), and `spiffe-sidecar dev token` JWT-SVIDs through
// jwtsvid.ParseAndValidate against `spiffe-sidecar dev jwt-bundle`.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueIntermediateCa, loadDevCa } from '../../../src/certs/dev-ca.js';
import { runCli } from '../../helpers/process.js';
import { issueSvid, tempDir } from '../../helpers/pki.js';
import { bundleArgs, type JwtResult, runInterop, type X509Result } from './harness.js';

const FRONTEND = 'spiffe://example.org/ns/shop/sa/frontend';
const ORDERS = 'spiffe://example.org/ns/shop/sa/orders';

let dir: { path: string; remove: () => Promise<void> };
const at = (name: string) => join(dir.path, name);

async function cli(args: string[]): Promise<string> {
  const done = await runCli(args);
  expect(done.code, done.stderr).toBe(0);
  return done.stdout;
}

function verifyX509(chain: string, key: string, bundle: string, ...extra: string[]) {
  return runInterop<X509Result>([
    'verify-x509',
    ...['-chain', chain, '-key', key],
    ...bundleArgs({ 'example.org': bundle }),
    ...extra,
  ]);
}

function verifyJwt(token: string, bundle: string, audience: string) {
  return runInterop<JwtResult>([
    'verify-jwt',
    ...['-token', token, '-audience', audience],
    ...bundleArgs({ 'example.org': bundle }),
  ]);
}

beforeAll(async () => {
  dir = await tempDir();
  await cli(['certs', 'init', '--trust-domain', 'example.org', '--out', at('ca')]);
  await cli(['certs', 'init', '--trust-domain', 'example.org', '--out', at('another-ca')]);
  await cli(['certs', 'issue', '--id', FRONTEND, '--ca', at('ca'), '--out', at('frontend'), '--lifetime', '2h']);
});

afterAll(async () => {
  await dir?.remove();
});

describe('go-spiffe accepts the SVIDs and tokens our dev commands make', () => {
  it('x509svid.Verify and x509svid.Parse accept a `certs issue` SVID against its ca.crt', async () => {
    const frontend = at('frontend');
    const result = await verifyX509(join(frontend, 'tls.crt'), join(frontend, 'tls.key'), join(frontend, 'ca.crt'));
    expect(result).toEqual({ verify: { ok: true, id: FRONTEND }, parse: { ok: true, id: FRONTEND } });
  });

  it('its lifetime is what --lifetime said: valid until 2 h from now as go-spiffe counts, expired after', async () => {
    const frontend = at('frontend');
    const check = (ms: number) =>
      verifyX509(
        join(frontend, 'tls.crt'),
        join(frontend, 'tls.key'),
        join(frontend, 'ca.crt'),
        ...['-time', new Date(Date.now() + ms).toISOString().replace(/\.\d+Z$/, 'Z')],
      );
    expect((await check(2 * 3_600_000 - 120_000)).verify).toEqual({ ok: true, id: FRONTEND });
    const late = await check(2 * 3_600_000 + 120_000);
    expect(late.verify.ok).toBe(false);
    expect(late.verify.error).toContain('certificate has expired');
  });

  it('go-spiffe refuses the same SVID against the bundle of another CA of the same trust domain', async () => {
    const frontend = at('frontend');
    const result = await verifyX509(
      join(frontend, 'tls.crt'),
      join(frontend, 'tls.key'),
      join(at('another-ca'), 'ca.crt'),
    );
    expect(result.verify.ok).toBe(false);
    expect(result.verify.error).toContain('signed by unknown authority');
  });

  it('go-spiffe accepts an SVID of the dev CA under an intermediate, carried in tls.crt (certs issue has no such flag)', async () => {
    const ca = await loadDevCa(at('ca'));
    const intermediate = await issueIntermediateCa(ca);
    const svid = await issueSvid(intermediate, { id: ORDERS });
    expect(svid.chainPem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    await writeFile(at('orders.crt'), svid.chainPem);
    await writeFile(at('orders.key'), svid.keyPem);
    const result = await verifyX509(at('orders.crt'), at('orders.key'), join(at('ca'), 'ca.crt'));
    expect(result).toEqual({ verify: { ok: true, id: ORDERS }, parse: { ok: true, id: ORDERS } });
    // Without the intermediate the path is gone.
    await writeFile(at('orders-leaf.crt'), svid.certPem);
    const alone = await verifyX509(at('orders-leaf.crt'), at('orders.key'), join(at('ca'), 'ca.crt'));
    expect(alone.verify.ok).toBe(false);
  });

  it('jwtsvid.ParseAndValidate accepts a `dev token` JWT-SVID against `dev jwt-bundle`, and refuses another audience', async () => {
    const bundle = at('example.org.jwt-bundle.json');
    await cli(['dev', 'jwt-bundle', '--dir', at('ca'), '--trust-domain', 'example.org', '--out', bundle]);
    const token = (
      await cli(['dev', 'token', '--dir', at('ca'), '--spiffe-id', FRONTEND, '--aud', 'orders', '--claim', 'team=shop'])
    ).trim();
    expect(token.split('.')).toHaveLength(3);

    const good = await verifyJwt(token, bundle, 'orders');
    expect(good, good.error).toMatchObject({ ok: true, id: FRONTEND, audience: ['orders'] });
    expect(good.claims).toMatchObject({ sub: FRONTEND, team: 'shop' });
    const expiresIn = Date.parse(good.expiry!) - Date.now();
    expect(expiresIn).toBeGreaterThan(3 * 60_000);
    expect(expiresIn).toBeLessThanOrEqual(5 * 60_000);

    const wrongAudience = await verifyJwt(token, bundle, 'payments');
    expect(wrongAudience.ok).toBe(false);
    expect(wrongAudience.error).toContain('expected audience in ["payments"]');
  });

  it('jwtsvid.ParseAndValidate refuses a `dev token` signed by another directory’s key', async () => {
    const bundle = at('another.jwt-bundle.json');
    await cli(['dev', 'jwt-bundle', '--dir', at('another-ca'), '--trust-domain', 'example.org', '--out', bundle]);
    const token = (await cli(['dev', 'token', '--dir', at('ca'), '--spiffe-id', FRONTEND, '--aud', 'orders'])).trim();
    const result = await verifyJwt(token, bundle, 'orders');
    expect(result.ok).toBe(false);
    expect(result.error).toMatch(/no JWT authority ".+" found for trust domain "example.org"/);
  });
});
