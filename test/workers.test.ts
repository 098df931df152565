// The --workers handoff of the identity-assertion key, with real cluster processes (the built dist/): every
// worker, a restarted one too, gets the primary's one key, whose JWKS the primary serves; a worker whose
// primary never answers fails its start instead of signing with a key nobody publishes.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/pki.js';

const DIST = new URL('../dist/', import.meta.url);

// Primary: shares the key (unless told `silent`), forks two workers, then a third once they have reported
// (a restarted worker), and prints what it saw. Worker: asks for the key and reports its kid.
const SCRIPT = `
import cluster from 'node:cluster';
const { assertionKeyForWorker, shareAssertionKey } = await import(${JSON.stringify(new URL('workers.js', DIST).href)});
const { assertionKey } = await import(${JSON.stringify(new URL('proxy/identity-assertion.js', DIST).href)});
const mode = process.argv[2];
if (cluster.isPrimary) {
  const outside = await assertionKeyForWorker();
  const shared = mode === 'silent' ? undefined : shareAssertionKey();
  const before = shared?.jwks();
  const reports = [];
  cluster.on('message', (_worker, m) => {
    if (m?.type !== 'test:report') return;
    reports.push(m);
    if (reports.length === 2) cluster.fork();
    if (reports.length === 3) {
      process.stdout.write(JSON.stringify({ outside: outside ?? null, before: before ?? null, reports, jwks: shared?.jwks() ?? null }));
      process.exit(0);
    }
  });
  cluster.fork();
  cluster.fork();
} else {
  const report = await assertionKeyForWorker().then(
    (pem) => ({ kid: assertionKey(pem).kid }),
    (err) => ({ error: err.message }),
  );
  process.send({ type: 'test:report', ...report }, () => process.exit(0));
}
`;

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir();
  await writeFile(join(dir.path, 'handoff.mjs'), SCRIPT);
});
afterAll(() => dir.remove());

interface Seen {
  outside: null;
  before: null;
  reports: { kid?: string; error?: string }[];
  jwks: { keys: { kid: string }[] } | null;
}

async function run(mode: 'share' | 'silent'): Promise<Seen> {
  const { stdout } = await promisify(execFile)(process.execPath, [join(dir.path, 'handoff.mjs'), mode], {
    timeout: 20_000,
  });
  return JSON.parse(stdout) as Seen;
}

describe('the identity-assertion key handoff (--workers)', () => {
  it('every worker, a restarted one too, signs with the one key whose JWKS the primary serves', async () => {
    const seen = await run('share');
    expect(seen.outside).toBeNull();
    // No key until a worker asks: without assertions the primary serves no JWKS.
    expect(seen.before).toBeNull();
    expect(seen.jwks?.keys).toHaveLength(1);
    expect(seen.reports).toEqual([0, 1, 2].map(() => ({ type: 'test:report', kid: seen.jwks?.keys[0].kid })));
  });

  it('a worker whose primary does not answer fails to start', async () => {
    const seen = await run('silent');
    expect(seen.jwks).toBeNull();
    for (const report of seen.reports) expect(report.error).toMatch(/did not hand over the identity assertion key/);
  });
});
