// `dev issuer`, `dev token` and `dev jwt-bundle` as real processes, checked by the real sidecar in JWT mode:
// the issuer serves OIDC discovery over HTTPS on loopback with a CA the sidecar is told to trust, its
// tokens and the JWT-SVIDs are admitted (or refused) exactly like production ones, the key is made once
// and kept (0600), bad input is refused naming the flag, and SIGTERM/SIGINT end the issuer with status 0.
import { readFile, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { tempDir } from '../helpers/pki.js';
import { jwtSidecarArgs, type Running, startCli, waitForEvent } from '../helpers/process.js';
import { runDev, startDev, stopDev, waitForOutput } from './dev-cli.js';

const FRONTEND = 'spiffe://example.org/ns/prod/sa/frontend';

let dir: Awaited<ReturnType<typeof tempDir>>;
let issuerDir: string;
let tdDir: string;
let issuer: Running;
let issuerUrl: string;
let issuerCa: string;
let app: EchoApp;
let sidecar: Running;
let port: number;

/** `https://…` fetched as the sidecar does: trusting only the given CA. */
function getJson(url: string, ca: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    request(url, { ca }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(JSON.parse(body) as Record<string, unknown>));
    })
      .on('error', reject)
      .end();
  });
}

async function token(...args: string[]): Promise<string> {
  const result = await runDev(['token', ...args]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return result.stdout;
}

async function call(bearer?: string, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${port}/orders/1`, {
    headers: { ...headers, ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }) },
  });
  const body = await res.text();
  return { status: res.status, body: JSON.parse(body) as Record<string, unknown> };
}

beforeAll(async () => {
  dir = await tempDir();
  issuerDir = join(dir.path, 'dev-issuer');
  tdDir = join(dir.path, 'example.org');
  issuer = startDev(['issuer', '--dir', issuerDir, '--listen', '127.0.0.1:0']);
  const printed = await waitForOutput(issuer, 'serving until SIGTERM or SIGINT');
  const flags = /sidecar flags: (--jwt-issuer dev=(\S+) --jwt-ca-file (\S+))\n/.exec(printed);
  expect(flags, printed).not.toBeNull();
  [, , issuerUrl, issuerCa] = flags as RegExpExecArray;
  const bundle = join(dir.path, 'example.org.jwt-bundle.json');
  const wrote = await runDev(['jwt-bundle', '--dir', tdDir, '--trust-domain', 'example.org', '--out', bundle]);
  expect(wrote.code, wrote.stderr).toBe(0);
  expect(wrote.stdout).toContain(`--jwt-bundle-file example.org=${bundle}`);
  app = await startEchoApp();
  sidecar = startCli(
    jwtSidecarArgs(
      app.url,
      ...(flags as RegExpExecArray)[1].split(' '),
      '--jwt-bundle-file',
      `example.org=${bundle}`,
      '--allow',
      FRONTEND,
      '--allow-issuer',
      'dev',
    ),
  );
  port = ((await waitForEvent(sidecar, 'started', 15_000)).listen as { port: number }).port;
});

afterAll(async () => {
  sidecar?.child.kill('SIGTERM');
  await sidecar?.exited;
  if (issuer) await stopDev(issuer);
  await app?.close();
  await dir?.remove();
});

describe('dev issuer, dev token and dev jwt-bundle mint tokens the real sidecar accepts', () => {
  it('the issuer serves discovery and its JWKS over HTTPS on loopback, trusted through the printed CA file', async () => {
    expect(issuerUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(issuer.stdout()).toContain(`dev issuer "dev" on ${issuerUrl}`);
    const ca = await readFile(issuerCa, 'utf8');
    const discovery = await getJson(`${issuerUrl}/.well-known/openid-configuration`, ca);
    expect(discovery).toMatchObject({ issuer: issuerUrl, jwks_uri: `${issuerUrl}/jwks.json` });
    const jwks = (await getJson(discovery.jwks_uri as string, ca)) as { keys: Record<string, unknown>[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
    expect(JSON.parse(await readFile(join(issuerDir, 'issuer.json'), 'utf8'))).toEqual({
      issuer: issuerUrl,
      name: 'dev',
    });
    for (const secret of ['jwt-signing-key.jwk', 'issuer-tls.key'])
      expect((await stat(join(issuerDir, secret))).mode & 0o777, secret).toBe(0o600);
  });

  it('an issuer token: printed alone, with the claims asked for, admitted by --allow-issuer', async () => {
    const printed = await token(
      ...['--dir', issuerDir, '--sub', 'ci-job', '--aud', 'orders', '--ttl', '2m'],
      ...['--claims-json', '{"groups":["deployers"],"team":"x"}', '--claim', 'team=payments'],
    );
    expect(printed).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const jwt = printed.trim();
    expect(decodeProtectedHeader(jwt)).toMatchObject({ alg: 'ES256', typ: 'JWT' });
    const claims = decodeJwt(jwt);
    expect(claims).toMatchObject({ iss: issuerUrl, sub: 'ci-job', aud: 'orders', team: 'payments' });
    expect(claims.groups).toEqual(['deployers']);
    expect((claims.exp as number) - (claims.iat as number)).toBe(120);
    const res = await call(jwt, { 'x-jwt-subject': 'admin' });
    expect(res.status).toBe(200);
    const headers = res.body.headers as Record<string, string>;
    expect(headers['x-jwt-issuer']).toBe('dev');
    expect(headers['x-jwt-subject']).toBe('ci-job');
    expect(headers['x-spiffe-id']).toBeUndefined();
  });

  it('a token for another audience, and no token, get 401', async () => {
    const other = (await token('--dir', issuerDir, '--sub', 'ci-job', '--aud', 'payments')).trim();
    expect(await call(other)).toMatchObject({ status: 401, body: { reason: 'ERR_JWT_AUDIENCE' } });
    expect(await call()).toMatchObject({ status: 401, body: { reason: 'ERR_JWT_MISSING' } });
  });

  it('a JWT-SVID (--spiffe-id) has no iss, is checked against the bundle file, and the rules decide', async () => {
    const svid = (await token('--dir', tdDir, '--spiffe-id', FRONTEND, '--aud', 'orders', '--aud', 'extra')).trim();
    const claims = decodeJwt(svid);
    expect(claims.iss).toBeUndefined();
    expect(claims).toMatchObject({ sub: FRONTEND, aud: ['orders', 'extra'] });
    const ok = await call(svid);
    expect(ok.status).toBe(200);
    expect((ok.body.headers as Record<string, string>)['x-spiffe-id']).toBe(FRONTEND);
    const batch = (
      await token('--dir', tdDir, '--spiffe-id', 'spiffe://example.org/ns/prod/sa/batch', '--aud', 'orders')
    ).trim();
    expect(await call(batch)).toMatchObject({ status: 403, body: { reason: 'no_matching_rule' } });
    // Signed by the issuer's key instead: not a key of example.org's bundle.
    const foreign = (await token('--dir', issuerDir, '--spiffe-id', FRONTEND, '--aud', 'orders')).trim();
    expect(await call(foreign)).toMatchObject({ status: 401, body: { reason: 'ERR_JWT_KEY_NOT_FOUND' } });
  });

  it('a second issuer on the same directory keeps the key and the CA; SIGINT ends it with status 0', async () => {
    const key = await readFile(join(issuerDir, 'jwt-signing-key.jwk'), 'utf8');
    const ca = await readFile(issuerCa, 'utf8');
    const again = startDev(['issuer', '--dir', issuerDir, '--listen', '127.0.0.1:0', '--name', 'dev-2']);
    const printed = await waitForOutput(again, 'serving until');
    const url = /on (https:\/\/127\.0\.0\.1:\d+) /.exec(printed)?.[1] as string;
    expect(printed).toContain(`--jwt-issuer dev-2=${url}`);
    const served = (await getJson(`${url}/jwks.json`, ca)) as { keys: { kid: string }[] };
    expect(served.keys[0].kid).toBe((JSON.parse(key) as { kid: string }).kid);
    expect(await readFile(join(issuerDir, 'jwt-signing-key.jwk'), 'utf8')).toBe(key);
    expect(await stopDev(again, 'SIGINT')).toMatchObject({ code: 0, signal: null });
    // It recorded its own URL; the first issuer serves on.
    expect(JSON.parse(await readFile(join(issuerDir, 'issuer.json'), 'utf8')).issuer).toBe(url);
  });

  it('SIGTERM ends the issuer with status 0 and closes its port', async () => {
    const other = startDev(['issuer', '--dir', join(dir.path, 'other'), '--listen', '127.0.0.1:0']);
    const url = new URL(/on (https:\/\/\S+) /.exec(await waitForOutput(other, 'serving until'))?.[1] as string);
    expect(await stopDev(other, 'SIGTERM')).toMatchObject({ code: 0, signal: null });
    const refused = await fetch(url).catch((err: { cause?: { code?: string } }) => err.cause?.code);
    expect(refused).toBe('ECONNREFUSED');
  });
});

describe('bad input is refused with status 1 and one line naming the flag', () => {
  let busy: Server;
  let busyPort: number;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    busyPort = (busy.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => busy.close(() => resolve())));

  const cases: [string, () => string[], RegExp][] = [
    ['token without --sub', () => ['token', '--dir', issuerDir, '--aud', 'o'], /ERR_CONFIG_MISSING: --sub is required/],
    ['token without --aud', () => ['token', '--dir', issuerDir, '--sub', 's'], /ERR_CONFIG_MISSING: --aud is required/],
    ['token without --dir', () => ['token', '--sub', 's', '--aud', 'o'], /ERR_CONFIG_MISSING: --dir is required/],
    ['a bad --ttl', () => ['token', '--dir', issuerDir, '--sub', 's', '--aud', 'o', '--ttl', '5x'], /--ttl "5x"/],
    [
      'a --claim without =',
      () => ['token', '--dir', issuerDir, '--sub', 's', '--aud', 'o', '--claim', 'team'],
      /--claim "team": expected NAME=VALUE/,
    ],
    [
      'a --claim that sets exp',
      () => ['token', '--dir', issuerDir, '--sub', 's', '--aud', 'o', '--claim', 'exp=1'],
      /--claim: the claim "exp" is not yours to set \(--ttl\)/,
    ],
    [
      '--claims-json not an object',
      () => ['token', '--dir', issuerDir, '--sub', 's', '--aud', 'o', '--claims-json', '[1]'],
      /--claims-json "\[1\]": not a JSON object/,
    ],
    [
      '--claims-json setting iss',
      () => ['token', '--dir', issuerDir, '--sub', 's', '--aud', 'o', '--claims-json', '{"iss":"x"}'],
      /--claims-json: the claim "iss"/,
    ],
    [
      '--sub with --spiffe-id',
      () => ['token', '--dir', issuerDir, '--sub', 's', '--spiffe-id', FRONTEND, '--aud', 'o'],
      /--sub and --spiffe-id exclude each other/,
    ],
    [
      'a --spiffe-id without a path',
      () => ['token', '--dir', issuerDir, '--spiffe-id', 'spiffe://example.org', '--aud', 'o'],
      /--spiffe-id spiffe:\/\/example.org: a JWT-SVID names a workload/,
    ],
    [
      'a --spiffe-id that is not one',
      () => ['token', '--dir', issuerDir, '--spiffe-id', 'https://example.org/x', '--aud', 'o'],
      /--spiffe-id "https:\/\/example.org\/x"/,
    ],
    [
      'an issuer token from a directory no issuer ever ran in',
      () => ['token', '--dir', join(dir.path, 'nothing'), '--sub', 's', '--aud', 'o'],
      /ERR_FILE_READ: --dir .*nothing: no issuer.json yet; start 'spiffe-sidecar dev issuer --dir/,
    ],
    ['an unknown flag', () => ['token', '--dir', issuerDir, '--bogus'], /ERR_CONFIG_INVALID: .*--bogus/],
    [
      'an issuer off loopback',
      () => ['issuer', '--dir', join(dir.path, 'x'), '--listen', '0.0.0.0:0'],
      /--listen 0.0.0.0:0: the dev issuer listens on loopback only/,
    ],
    [
      'an issuer on a taken port',
      () => ['issuer', '--dir', join(dir.path, 'x'), '--listen', `127.0.0.1:${busyPort}`],
      /ERR_LISTEN: --listen 127.0.0.1:\d+: cannot listen \(EADDRINUSE\)/,
    ],
    ['a bad issuer --name', () => ['issuer', '--dir', join(dir.path, 'x'), '--name', 'Dev'], /--name "Dev"/],
    [
      'jwt-bundle without --trust-domain',
      () => ['jwt-bundle', '--dir', tdDir],
      /ERR_CONFIG_MISSING: --trust-domain is required/,
    ],
    [
      'a jwt-bundle --out that cannot be written',
      () => ['jwt-bundle', '--dir', tdDir, '--trust-domain', 'example.org', '--out', join(dir.path, 'no', 'b.json')],
      /ERR_FILE_WRITE: --out: cannot write .*b\.json \(ENOENT\)/,
    ],
    ['an unknown dev command', () => ['mint'], /unknown command 'dev mint'/],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const result = await runDev(args());
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/^spiffe-sidecar: ERR_[A-Z_]+: [^\n]+\n$/);
  });

  it.each([[['--help']], [['token', '--help']], [[]]])(
    'dev %j prints every subcommand and its flags, status 0',
    async (args) => {
      const result = await runDev(args);
      expect(result.code).toBe(0);
      for (const text of ['dev issuer [flags]', 'dev token [flags]', 'dev workload-api [flags]', '--claims-json JSON'])
        expect(result.stdout).toContain(text);
    },
  );
});
