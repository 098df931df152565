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
    // expect.poll waits for an event (a log line, a connection closed, an answer): its default 1 s deadline is a
    // wall-clock margin a busy machine can miss. The cap is a bound on a hang, well inside the test's timeout.
    expect: { poll: { timeout: 15_000 } },
  },
});
