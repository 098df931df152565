// Issue 21: `certs init` silently replaced an existing CA (every SVID issued before stopped verifying) and
// `certs issue` overwrote an SVID. Now neither replaces any file without --force, writes nothing at all when
// it refuses, and says where its files went. Real processes in a temporary directory.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CERTS_ISSUE_DEFAULTS } from '../../src/config/defaults.js';
import { runCli } from '../helpers/process.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'certs-force-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const read = (path: string) => readFile(path);

async function init(out: string, ...extra: string[]) {
  return runCli(['certs', 'init', '--trust-domain', 'example.org', '--out', out, ...extra]);
}

async function issue(ca: string, out: string, ...extra: string[]) {
  return runCli(['certs', 'issue', '--ca', ca, '--id', 'spiffe://example.org/ns/prod/sa/web', '--out', out, ...extra]);
}

function oneErrorLine(result: { code: number | null; stdout: string; stderr: string }, code: string): string {
  expect(result.code).toBe(1);
  expect(result.stdout).toBe('');
  const lines = result.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^spiffe-sidecar: ${code}: `));
  return lines[0];
}

describe('certs init', () => {
  it('creates the CA, says where and for how long SVIDs last by default; a second run refuses and changes nothing', async () => {
    const ca = join(dir, 'ca');
    const first = await init(ca);
    expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
    expect(first.stdout).toContain(join(ca, 'ca.crt'));
    expect(first.stdout).toContain(join(ca, 'ca.key'));
    expect(first.stdout).toContain(`last ${CERTS_ISSUE_DEFAULTS.lifetime.value} by default`);
    expect(CERTS_ISSUE_DEFAULTS.lifetime.value).toBe('1h');
    const [cert, key] = [await read(join(ca, 'ca.crt')), await read(join(ca, 'ca.key'))];
    expect((await stat(join(ca, 'ca.key'))).mode & 0o777).toBe(0o600);

    const again = await init(ca);
    const line = oneErrorLine(again, 'ERR_FILE_EXISTS');
    expect(line).toContain(join(ca, 'ca.crt'));
    expect(line).toContain('--force');
    expect(await read(join(ca, 'ca.crt'))).toEqual(cert);
    expect(await read(join(ca, 'ca.key'))).toEqual(key);
    expect((await readdir(ca)).sort()).toEqual(['ca.crt', 'ca.key']);
  });

  it('--force replaces both files, the key still private', async () => {
    const ca = join(dir, 'forced');
    expect((await init(ca)).code).toBe(0);
    const [cert, key] = [await read(join(ca, 'ca.crt')), await read(join(ca, 'ca.key'))];
    const forced = await init(ca, '--force');
    expect({ code: forced.code, stderr: forced.stderr }).toEqual({ code: 0, stderr: '' });
    expect(await read(join(ca, 'ca.crt'))).not.toEqual(cert);
    expect(await read(join(ca, 'ca.key'))).not.toEqual(key);
    expect((await stat(join(ca, 'ca.key'))).mode & 0o777).toBe(0o600);
    expect((await readdir(ca)).sort()).toEqual(['ca.crt', 'ca.key']);
  });

  it('one existing file is enough to refuse, and then not even the other is written', async () => {
    const ca = join(dir, 'half');
    await mkdir(ca);
    await writeFile(join(ca, 'ca.key'), 'mine');
    const line = oneErrorLine(await init(ca), 'ERR_FILE_EXISTS');
    expect(line).toContain(join(ca, 'ca.key'));
    expect(await readdir(ca)).toEqual(['ca.key']);
    expect(await readFile(join(ca, 'ca.key'), 'utf8')).toBe('mine');
  });

  it('--out naming a file is refused in one line, no stack trace', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    const line = oneErrorLine(await init(file), 'ERR_FILE_WRITE');
    expect(line).toContain(`--out ${file}: a file, not a directory`);
  });
});

describe('certs issue', () => {
  let ca: string;
  beforeAll(async () => {
    ca = join(dir, 'issuer');
    expect((await init(ca)).code).toBe(0);
  });

  it('writes the three files, says where and for how long; a second run refuses and changes nothing; --force replaces', async () => {
    const out = join(dir, 'web');
    const first = await issue(ca, out);
    expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: '' });
    for (const name of ['tls.crt', 'tls.key', 'ca.crt']) expect(first.stdout).toContain(join(out, name));
    expect(first.stdout).toContain('valid for 1h (the default');
    const before = await Promise.all(['tls.crt', 'tls.key', 'ca.crt'].map((f) => read(join(out, f))));

    const line = oneErrorLine(await issue(ca, out), 'ERR_FILE_EXISTS');
    expect(line).toContain(join(out, 'tls.crt'));
    expect(line).toContain('--force');
    expect(await Promise.all(['tls.crt', 'tls.key', 'ca.crt'].map((f) => read(join(out, f))))).toEqual(before);

    const forced = await issue(ca, out, '--force', '--lifetime', '2h');
    expect({ code: forced.code, stderr: forced.stderr }).toEqual({ code: 0, stderr: '' });
    expect(forced.stdout).toContain('valid for 2h,');
    expect(await read(join(out, 'tls.crt'))).not.toEqual(before[0]);
    expect(await read(join(out, 'tls.key'))).not.toEqual(before[1]);
    expect((await stat(join(out, 'tls.key'))).mode & 0o777).toBe(0o600);
    expect((await readdir(out)).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
  });

  it('a bundle already in --out (say, ca.crt copied there) is enough to refuse, and nothing is written', async () => {
    const out = join(dir, 'with-bundle');
    await mkdir(out);
    await writeFile(join(out, 'ca.crt'), 'bundle');
    const line = oneErrorLine(await issue(ca, out), 'ERR_FILE_EXISTS');
    expect(line).toContain(join(out, 'ca.crt'));
    expect(await readdir(out)).toEqual(['ca.crt']);
  });
});
