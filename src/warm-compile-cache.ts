// `NODE_COMPILE_CACHE=DIR node dist/warm-compile-cache.js`: fills DIR with V8's compiled code for every module of
// the bundle (dist/main.js and dist/chunks/), so that a sidecar started later with the same NODE_COMPILE_CACHE
// skips compiling them: ~15 ms of a ~150 ms start on Node 24 (README, Performance). The image runs it once at
// build time, in a stage of its own, as the user and with the node binary the sidecar runs with (Node keeps one
// cache per Node version, V8 flags and user id, and reads no other), and ships the result owned by root and
// read-only: Node does not check compiled code against its source, so the user that runs it must not write it.
// Nothing here runs the sidecar.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What `node:module` has for the compile cache on Node 22.1 and later (absent on Node 20). */
interface CompileCacheApi {
  getCompileCacheDir?: () => string | undefined;
  flushCompileCache?: () => void;
}

function fail(message: string): never {
  process.stderr.write(`spiffe-sidecar warm-compile-cache: ${message}\n`);
  process.exit(1);
}

async function warm(): Promise<void> {
  const api = process.getBuiltinModule('node:module') as CompileCacheApi;
  if (!api.getCompileCacheDir || !api.flushCompileCache) {
    process.stdout.write(`Node ${process.version} has no compile cache (Node 22.1 and later do): nothing to warm\n`);
    return;
  }
  const dir = api.getCompileCacheDir();
  if (!dir) fail('the compile cache is off: set NODE_COMPILE_CACHE to a directory this user can write');
  const dist = dirname(fileURLToPath(import.meta.url));
  // main.js runs the CLI when it is evaluated (and chunks import it): let it print the version and return.
  process.argv = [process.argv[0] as string, join(dist, 'main.js'), '--version'];
  const modules = [
    join(dist, 'main.js'),
    ...readdirSync(join(dist, 'chunks'))
      .filter((f) => f.endsWith('.js'))
      .sort()
      .map((f) => join(dist, 'chunks', f)),
  ];
  for (const file of modules) await import(file);
  api.flushCompileCache();
  const written = readdirSync(dir).length;
  if (written === 0) fail(`${dir}: nothing was written (is the directory writable by this user?)`);
  process.stdout.write(`compile cache: ${modules.length} modules compiled into ${dir}\n`);
}

await warm();
