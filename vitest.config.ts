import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The reference-peer scenarios need Go: `npm run test:interop` (vitest.interop.config.ts).
    exclude: ['test/interop/**', '**/node_modules/**'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: e2e files each start real servers, so keep file parallelism modest.
    maxWorkers: 2,
  },
});
