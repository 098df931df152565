// `npm run test:interop`: the scenarios against the reference peers (a real SPIRE server and agent, go-spiffe,
// helm), built from the Go module proxy once per machine by test/interop/global-setup.ts. Kept out of `npm test`
// so the README's two commands need no Go.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/interop/**/*.test.ts'],
    globalSetup: ['test/interop/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
  },
});
