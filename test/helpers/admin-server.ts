// The admin listener on its own, for tests of its endpoints: a real AdminServer on an ephemeral loopback
// port with nothing to report but what the test gives it, closed after each test.
import { afterEach } from 'vitest';
import { type AdminOptions, AdminServer } from '../../src/admin/server.js';

/** Call once per file: returns a starter that resolves with the started server's base URL. */
export function useAdminServers(): (extra?: Partial<AdminOptions>) => Promise<string> {
  const started: AdminServer[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.close()));
  });
  return async (extra = {}) => {
    const server = await AdminServer.start({
      host: '127.0.0.1',
      port: 0,
      registry: { metrics: async () => '', contentType: 'text/plain' },
      identity: undefined,
      source: 'none',
      readiness: async () => ({ ready: true }),
      ...extra,
    });
    started.push(server);
    return `http://127.0.0.1:${server.address().port}`;
  };
}
