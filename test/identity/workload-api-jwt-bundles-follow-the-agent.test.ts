// SPIRE mode's JWT bundles (FetchJWTBundles) against a real gRPC server on a real Unix socket: they follow what
// the agent grants. Workload API §6.2.2: a client whose bundles are denied (PermissionDenied) "SHOULD cease using"
// them; and as for the X.509 stream, an error after startup must not stop key rotation for good.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { WorkloadApiClient } from '../../src/identity/workload-api-client.js';
import { WorkloadApiJwtBundles } from '../../src/identity/workload-api-jwt-bundles.js';
import { parseWorkloadEndpoint } from '../../src/identity/workload-endpoint.js';
import { tempDir } from '../helpers/pki.js';
import { capturingLogger } from '../helpers/sidecar.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';

let dir: { path: string; remove: () => Promise<void> };
const closers: (() => unknown)[] = [];
beforeAll(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
afterAll(() => dir.remove());

let socketCounter = 0;
async function agentAndBundles() {
  const api = await TestWorkloadApi.start(join(dir.path, `agent-${socketCounter++}.sock`));
  closers.push(() => api.close());
  const { log, logs } = capturingLogger();
  const client = new WorkloadApiClient(parseWorkloadEndpoint(api.address, 'test'));
  closers.push(() => client.close());
  const bundles = new WorkloadApiJwtBundles(client, log, { initialMs: 20, maxMs: 200 });
  closers.push(() => bundles.close());
  return { api, bundles, logs };
}

/** The kids the source holds for example.org. */
const kids = (bundles: WorkloadApiJwtBundles) =>
  (bundles.current()?.get('example.org')?.keys ?? []).map((k) => (k as { kid?: string }).kid);

it('bundles denied by PermissionDenied are used no more, and come back when the agent grants them again', async () => {
  const { api, bundles, logs } = await agentAndBundles();
  api.setJwtBundles({ 'spiffe://example.org': { keys: [{ kty: 'EC', kid: 'a', use: 'jwt-svid' }] } });
  await expect.poll(() => kids(bundles)).toEqual(['a']);
  api.unregister();
  await expect.poll(() => bundles.current()?.size).toBe(0);
  expect(logs).toContainEqual(expect.objectContaining({ event: 'jwt_bundles_revoked', code: 'PERMISSION_DENIED' }));
  api.register();
  await expect.poll(() => kids(bundles)).toEqual(['a']);
});

it('after startup, InvalidArgument or Unimplemented on the stream is retried: the next keys still arrive', async () => {
  const { api, bundles, logs } = await agentAndBundles();
  api.setJwtBundles({ 'spiffe://example.org': { keys: [{ kty: 'EC', kid: 'old', use: 'jwt-svid' }] } });
  await expect.poll(() => kids(bundles)).toEqual(['old']);
  for (const [code, kid] of [
    [grpc.status.INVALID_ARGUMENT, 'new'],
    [grpc.status.UNIMPLEMENTED, 'newer'],
  ] as const) {
    api.endJwtBundleStreams(code, 'as an agent in trouble might');
    // Set while no stream is open: only a new stream can bring it.
    api.setJwtBundles({ 'spiffe://example.org': { keys: [{ kty: 'EC', kid, use: 'jwt-svid' }] } });
    await expect.poll(() => kids(bundles)).toEqual([kid]);
  }
  expect(api.calls.filter((c) => c.method === 'FetchJWTBundles')).toHaveLength(3);
  expect(logs.filter((l) => l.event === 'workload_api_stream_ended').map((l) => l.retry_in_ms)).toEqual([200, 200]);
  expect(logs.some((l) => l.event === 'workload_api_failed')).toBe(false);
});
