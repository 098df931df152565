// Startup fails closed, before any socket opens, with one line that names the code, the flag and the fix.
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { parseCommandLine } from '../../src/cli.js';
import { buildConfig } from '../../src/config.js';
import { runCli } from '../helpers/process.js';
import {
  createDevCa,
  HOUR,
  issueSvid,
  type ServingFiles,
  svidWith,
  tempDir,
  writeServingFiles,
} from '../helpers/pki.js';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let good: ServingFiles;
let other: IssuedCertificate;

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  good = await writeServingFiles(dir.path, await issueSvid(ca, { id: 'spiffe://example.org/server' }), ca.certPem);
  other = await issueSvid(ca, { id: 'spiffe://example.org/other' });
});
afterAll(() => dir.remove());

function args(overrides: Record<string, string | undefined> = {}, extra: string[] = []): string[] {
  const flags: Record<string, string | undefined> = {
    listen: '127.0.0.1:0',
    upstream: 'http://127.0.0.1:8080',
    'mtls-cert-file': good.certFile,
    'mtls-key-file': good.keyFile,
    'mtls-ca-file': good.caFile,
    allow: 'spiffe://example.org/client',
    ...overrides,
  };
  return ['run', ...Object.entries(flags).flatMap(([k, v]) => (v === undefined ? [] : [`--${k}`, v])), ...extra];
}

async function file(name: string, content: string): Promise<string> {
  const path = join(dir.path, name);
  await writeFile(path, content);
  return path;
}

async function expectStartupError(argv: string[], code: string, ...fragments: string[]) {
  const result = await runCli(argv);
  expect(result.code).toBe(1);
  expect(result.stdout).not.toContain('sidecar started');
  const line = result.stderr.trim();
  expect(line.split('\n')).toHaveLength(1);
  expect(line).toContain(`spiffe-sidecar: ${code}: `);
  for (const fragment of fragments) expect(line).toContain(fragment);
}

describe('the CLI refuses to start with an error that names the flag', () => {
  it('a missing certificate file', async () => {
    await expectStartupError(
      args({ 'mtls-cert-file': '/nonexistent/tls.crt' }),
      'ERR_FILE_READ',
      '--mtls-cert-file /nonexistent/tls.crt',
      'no such file',
    );
  });

  it('an unreadable key file (a directory)', async () => {
    await expectStartupError(args({ 'mtls-key-file': dir.path }), 'ERR_FILE_READ', `--mtls-key-file ${dir.path}`);
  });

  it('a key that does not match the certificate', async () => {
    const key = await file('other.key', other.keyPem);
    await expectStartupError(
      args({ 'mtls-key-file': key }),
      'ERR_KEY_MISMATCH',
      `--mtls-key-file ${key}`,
      'does not match',
    );
  });

  it('a key file that holds no key', async () => {
    const key = await file('garbage.key', 'not a key');
    await expectStartupError(args({ 'mtls-key-file': key }), 'ERR_KEY_PARSE', `--mtls-key-file ${key}`);
  });

  it('a certificate that is not a valid SVID (a CA certificate with its key)', async () => {
    const caDir = join(dir.path, 'ca');
    const { saveDevCa } = await import('../../src/certs/dev-ca.js');
    await saveDevCa(ca, caDir);
    await expectStartupError(
      args({ 'mtls-cert-file': join(caDir, 'ca.crt'), 'mtls-key-file': join(caDir, 'ca.key') }),
      'ERR_OWN_SVID_INVALID',
      '--mtls-cert-file',
    );
  });

  it('an expired certificate', async () => {
    const expired = await svidWith(ca, 'spiffe://example.org/server', {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    const cert = await file('expired.crt', expired.chainPem);
    const key = await file('expired.key', expired.keyPem);
    await expectStartupError(args({ 'mtls-cert-file': cert, 'mtls-key-file': key }), 'ERR_OWN_SVID_INVALID', 'expired');
  });

  it('a CA file of another trust domain', async () => {
    const foreign = await createDevCa({ trustDomain: 'partner.org' });
    const caFile = await file('foreign-ca.crt', foreign.certPem);
    await expectStartupError(
      args({ 'mtls-ca-file': caFile }),
      'ERR_BUNDLE_INVALID',
      `--mtls-ca-file ${caFile}`,
      'partner.org',
    );
  });

  it('a certificate file that holds no certificate', async () => {
    const cert = await file('garbage.crt', 'hello');
    await expectStartupError(args({ 'mtls-cert-file': cert }), 'ERR_CERT_PARSE', `--mtls-cert-file ${cert}`);
  });

  it('no allow rule', async () => {
    await expectStartupError(args({ allow: undefined }), 'ERR_NO_ALLOW_RULE', '--allow', '--allow-any');
  });

  it('an invalid allow rule', async () => {
    await expectStartupError(
      args({ allow: 'spiffe://example.org/app-*' }),
      'ERR_INVALID_ALLOW_RULE',
      '--allow',
      'partial wildcards',
    );
  });

  it('an upstream off loopback without --unsafe-upstream', async () => {
    await expectStartupError(
      args({ upstream: 'http://10.1.2.3:8080' }),
      'ERR_UNSAFE_UPSTREAM',
      '--upstream',
      '--unsafe-upstream',
    );
  });

  it('no upstream, no files, an unknown flag, a bad listen address', async () => {
    await expectStartupError(args({ upstream: undefined }), 'ERR_CONFIG_MISSING', '--upstream');
    await expectStartupError(args({ 'mtls-ca-file': undefined }), 'ERR_CONFIG_MISSING', '--mtls-ca-file');
    await expectStartupError(args({}, ['--allow-everyone']), 'ERR_CONFIG_INVALID', '--allow-everyone');
    await expectStartupError(args({ listen: '8443' }), 'ERR_CONFIG_INVALID', '--listen');
  });

  it('a federated bundle for our own trust domain, or given twice', async () => {
    await expectStartupError(
      args({}, ['--federated-bundle', `example.org=${good.caFile}`]),
      'ERR_CONFIG_INVALID',
      '--federated-bundle',
    );
    await expectStartupError(args({}, ['--federated-bundle', 'nothing']), 'ERR_CONFIG_INVALID', 'TRUST_DOMAIN=FILE');
  });

  it('a reload interval outside 1s..24h', async () => {
    await expectStartupError(
      args({ 'reload-interval': '10ms' }),
      'ERR_CONFIG_INVALID',
      '--reload-interval',
      'between 1s and 24h',
    );
    await expectStartupError(args({ 'reload-interval': '30d' }), 'ERR_CONFIG_INVALID', '--reload-interval');
    await expectStartupError(args({ 'reload-interval': 'soon' }), 'ERR_CONFIG_INVALID', '--reload-interval');
  });

  it.each([
    [['--jwt-issuer', 'a=https://idp.test', '--jwt-issuer', 'b=https://idp.test'], 'given twice'],
    [['--jwt-issuer', 'k8s=https://k8s.test', '--jwt-subject-header', 'x-spiffe-id'], 'must differ'],
    [['--jwt-issuer', 'k8s=https://k8s.test', '--jwt-issuer-header', 'x-jwt-subject'], 'must differ'],
    [
      ['--jwt-issuer', 'k8s=https://k8s.test', '--jwt-bundle-file', 'cluster.local=/x.json'],
      'trust domain of their own',
    ],
    [['--jwt-issuer', 'idp=http://idp.test'], 'https://'],
    [
      [
        '--jwt-issuer',
        'k8s=https://k8s.test',
        '--k8s-token-review',
        '--jwt-issuer',
        'x=https://x.test',
        '--k8s-api-server',
        'http://a',
      ],
      'https://',
    ],
    [['--jwt-issuer', 'k8s-dev=https://k8s.test', '--k8s-token-review'], 'needs a Kubernetes issuer'],
    // Names that apps read as another (CGI/WSGI fold _ to -): a caller's header could stand in for ours.
    [['--jwt-issuer', 'k8s=https://k8s.test', '--jwt-subject-header', 'x_spiffe_id'], '--jwt-subject-header'],
    [['--jwt-issuer', 'k8s=https://k8s.test', '--jwt-issuer-header', 'x.issuer'], '--jwt-issuer-header'],
    [['--jwt-issuer', 'k8s=https://k8s.test', '--identity-header', 'x_caller'], '--identity-header'],
    [['--jwt-issuer', 'k8s=https://k8s.test', '--jwt-subject-header', 'x-forwarded-for'], 'reserved'],
  ])('JWT mode refuses %j', async (extra, fragment) => {
    await expectStartupError(
      [
        'run',
        '--listen',
        '127.0.0.1:0',
        '--upstream',
        'http://127.0.0.1:8080',
        '--allow-any',
        '--auth-mode',
        'jwt',
        '--jwt-audience',
        'orders',
        ...extra,
      ],
      'ERR_CONFIG_INVALID',
      fragment,
    );
  });

  it('JWT mode over plain HTTP off loopback, unless --unsafe-plaintext-jwt (RFC 6750 §5.3)', async () => {
    const jwtArgs = (listen: string, ...extra: string[]) => [
      'run',
      '--listen',
      listen,
      '--upstream',
      'http://127.0.0.1:8080',
      '--allow-any',
      '--auth-mode',
      'jwt',
      '--jwt-audience',
      'orders',
      '--jwt-issuer',
      'k8s=https://k8s.test',
      ...extra,
    ];
    await expectStartupError(jwtArgs('0.0.0.0:0'), 'ERR_UNSAFE_LISTEN', '--listen 0.0.0.0', '--unsafe-plaintext-jwt');
    await expectStartupError(jwtArgs('[::]:0'), 'ERR_UNSAFE_LISTEN', '--jwt-transport tls');
    // The explicit opt-in is accepted; and loopback needs none.
    const command = parseCommandLine(jwtArgs('0.0.0.0:0', '--unsafe-plaintext-jwt'), {});
    expect(command.command === 'run' && buildConfig(command.options).listen.host).toBe('0.0.0.0');
    const loopback = parseCommandLine(jwtArgs('127.0.0.1:0'), {});
    expect(loopback.command === 'run' && buildConfig(loopback.options).auth).toMatchObject({ transport: 'plain' });
  });

  it('a listen port that is taken', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    try {
      await expectStartupError(
        args({ listen: `127.0.0.1:${port}` }),
        'ERR_LISTEN',
        `--listen 127.0.0.1:${port}`,
        'EADDRINUSE',
      );
    } finally {
      blocker.close();
    }
  });
});
