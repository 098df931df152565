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
    // expect.poll waits for an event (a log line, a connection closed, an answer): its default 1 s deadline is a
    // wall-clock margin a busy machine can miss. The cap is a bound on a hang, well inside the test's timeout.
    expect: { poll: { timeout: 30_000 } },
  },
});
