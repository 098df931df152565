// `dev issuer` keeps a private key in its directory: it never writes through a symlink planted there, a key
// it replaces ends up 0600, and a directory others can write (who could plant the signing key) is refused.
import { chmod, lstat, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/pki.js';
import { runDev, startDev, waitForOutput } from './dev-cli.js';

let dir: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(() => dir.remove());

describe('dev issuer writes its keys safely', () => {
  it('a symlink planted where the TLS key goes is replaced, and its target left as it was', async () => {
    const issuerDir = join(dir.path, 'issuer');
    await mkdir(issuerDir, { mode: 0o700 });
    const victim = join(dir.path, 'victim.txt');
    await writeFile(victim, 'precious\n', { mode: 0o644 });
    await symlink(victim, join(issuerDir, 'issuer-tls.key'));
    const issuer = startDev(['issuer', '--dir', issuerDir, '--listen', '127.0.0.1:0']);
    try {
      await waitForOutput(issuer, 'serving until');
      expect(await readFile(victim, 'utf8')).toBe('precious\n');
      const key = await lstat(join(issuerDir, 'issuer-tls.key'));
      expect(key.isSymbolicLink()).toBe(false);
      expect(key.mode & 0o777).toBe(0o600);
    } finally {
      issuer.child.kill('SIGTERM');
      await issuer.exited;
    }
  });

  it('a directory that others can write is refused, naming it and the fix', async () => {
    const shared = join(dir.path, 'shared');
    await mkdir(shared);
    await chmod(shared, 0o777);
    const result = await runDev(['issuer', '--dir', shared, '--listen', '127.0.0.1:0']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ERR_FILE_WRITE');
    expect(result.stderr).toContain(`chmod go-w ${shared}`);
  });
});
