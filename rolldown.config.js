// The CLI as one module (plus chunks loaded only by the modes that need them): Node 20 spends about 1 ms
// per ES module it loads, and the CLI pulls in ~90 of ours and ~200 small CommonJS files of its
// dependencies. Bundling them halves the CPU to ready (see the README's Performance section).
// Input is tsc's output, so the bundle runs exactly the code the type checker saw; `dist/index.js` (the
// library) stays unbundled next to it.
import { readFileSync, rmSync } from 'node:fs';

/** @type {import('rolldown').RolldownOptions} */
export default {
  input: 'dist/main.js',
  platform: 'node',
  // Node's own modules stay imports; every npm dependency is bundled.
  external: [/^node:/],
  plugins: [
    {
      name: 'workload-proto-beside-its-chunk',
      buildStart() {
        rmSync('dist/chunks', { recursive: true, force: true });
      },
      generateBundle() {
        // workload-api-definition.ts reads its .proto from beside itself (`new URL('./workload.proto', import.meta.url)`);
        // in the bundle it lives in a chunk.
        this.emitFile({
          type: 'asset',
          fileName: 'chunks/workload.proto',
          source: readFileSync('src/identity/workload.proto'),
        });
      },
    },
  ],
  output: {
    dir: 'dist',
    format: 'esm',
    entryFileNames: 'main.js',
    chunkFileNames: 'chunks/[name]-[hash].js',
    sourcemap: true,
  },
};
