// The watcher reloads on changes that can matter (the watched files, a Kubernetes volume's `..data`
// swap) and ignores the rest of the directory: a busy neighbour (a log file) must not cost a reload each time.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relevantChange, watchIdentityFiles } from '../src/file-watcher.js';
import { createLogger } from '../src/log.js';
import { tempDir } from './helpers/pki.js';

describe('file watcher', () => {
  const names = new Set(['tls.crt', 'policy.yaml']);

  it('counts events on a watched file and on the atomic writer’s entries', () => {
    expect(relevantChange(names, '/etc/svid/tls.crt')).toBe(true);
    expect(relevantChange(names, '/etc/policy/policy.yaml')).toBe(true);
    expect(relevantChange(names, '/etc/svid/..data')).toBe(true);
    expect(relevantChange(names, '/etc/svid/..data_tmp')).toBe(true);
    expect(relevantChange(names, '/etc/svid/..2026_12_03_12_00_00.123456789')).toBe(true);
  });

  it('ignores the other files of the directory', () => {
    expect(relevantChange(names, '/etc/policy/access.log')).toBe(false);
    expect(relevantChange(names, '/etc/policy/.policy.yaml.swp')).toBe(false);
    expect(relevantChange(names, '/etc/policy/tls.crt.bak')).toBe(false);
  });

  describe('on a real directory', () => {
    let dir: { path: string; remove: () => Promise<void> };
    beforeAll(async () => {
      dir = await tempDir();
    });
    afterAll(() => dir.remove());

    it('a write to the watched file calls back', async () => {
      const file = join(dir.path, 'policy.yaml');
      await writeFile(file, 'a');
      let calls = 0;
      const watcher = await watchIdentityFiles([file], () => calls++, createLogger('silent'));
      try {
        await writeFile(join(dir.path, 'access.log'), 'noise');
        await writeFile(file, 'b');
        await expect.poll(() => calls, { timeout: 5000 }).toBeGreaterThan(0);
      } finally {
        await watcher.close();
      }
    });
  });
});
