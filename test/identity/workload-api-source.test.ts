// The Workload API identity source against a real gRPC server on a real Unix socket (VERIFIER-RULES F).
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { SidecarError } from '../../src/errors.js';
import { WorkloadApiClient } from '../../src/identity/workload-api-client.js';
import { workloadApiDefinition } from '../../src/identity/workload-api-definition.js';
import { parseX509SvidResponse, WorkloadApiIdentitySource } from '../../src/identity/workload-api-source.js';
import { parseWorkloadEndpoint } from '../../src/identity/workload-endpoint.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { capturingLogger } from '../helpers/sidecar.js';
import { encodeX509, pemToDer, TestWorkloadApi, type X509State } from '../helpers/workload-api-server.js';

const ID = 'spiffe://example.org/workload';
let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let partner: CertificateAuthority;
let svid: IssuedCertificate;
const servers: TestWorkloadApi[] = [];
const sources: WorkloadApiIdentitySource[] = [];

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  partner = await createDevCa({ trustDomain: 'partner.org' });
  svid = await issueSvid(ca, { id: ID });
});
afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(() => dir.remove());

let socketCounter = 0;
async function server(options: { registered?: boolean } = {}) {
  const api = await TestWorkloadApi.start(join(dir.path, `agent-${socketCounter++}.sock`), options);
  servers.push(api);
  return api;
}

function state(s: IssuedCertificate = svid, federated?: Record<string, string>): X509State {
  return { svids: [{ spiffeId: ID, svid: s, bundlePem: ca.certPem }], federated };
}

function source(address: string) {
  const { log, logs } = capturingLogger();
  const s = WorkloadApiIdentitySource.start({
    endpoint: parseWorkloadEndpoint(address, 'test'),
    log,
    backoff: { initialMs: 50, maxMs: 200 },
  });
  sources.push(s);
  return { source: s, logs };
}

describe('the Workload API identity source', () => {
  it('sends the security header on every call; a call without it is what the server rejects', async () => {
    const api = await server();
    api.setX509(state());
    const { source: s } = source(api.address);
    await s.firstIdentity();
    expect(api.calls.find((c) => c.method === 'FetchX509SVID')?.header).toEqual(['true']);

    const Service = workloadApiDefinition().SpiffeWorkloadAPI as grpc.ServiceClientConstructor;
    const bare = new Service(api.address, grpc.credentials.createInsecure()) as unknown as {
      FetchX509SVID: (req: object) => grpc.ClientReadableStream<unknown>;
      close(): void;
    };
    const err = await new Promise<grpc.ServiceError>((resolve) => bare.FetchX509SVID({}).on('error', resolve));
    bare.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe('security header missing from request');
    expect(api.calls.at(-1)).toEqual({ method: 'FetchX509SVID', header: [] });
  });

  it('serves the SVID of the first message and reports ready', async () => {
    const api = await server();
    api.setX509(state());
    const { source: s } = source(api.address);
    expect((await s.firstIdentity()).svid.id.toString()).toBe(ID);
    expect(s.status()).toEqual({ ready: true });
    expect(s.current().svid.chain[0].serialNumber).toBe(svid.serialNumber);
  });

  it('agent down at startup: not ready, then ready once it comes up', async () => {
    const socketPath = join(dir.path, 'late.sock');
    const { source: s, logs } = source(`unix://${socketPath}`);
    await expect
      .poll(() => logs.filter((l) => l.event === 'workload_api_stream_ended').length)
      .toBeGreaterThanOrEqual(2);
    expect(s.status()).toEqual({ ready: false, reason: 'waiting_for_svid' });
    expect(logs.find((l) => l.event === 'workload_api_stream_ended')?.code).toBe('UNAVAILABLE');
    const api = await TestWorkloadApi.start(socketPath);
    servers.push(api);
    api.setX509(state());
    await s.firstIdentity();
    expect(s.status()).toEqual({ ready: true });
  });

  it('PermissionDenied until registered: keeps retrying, not ready; then ready', async () => {
    const api = await server({ registered: false });
    api.setX509(state());
    const { source: s, logs } = source(api.address);
    await expect.poll(() => logs.filter((l) => l.code === 'PERMISSION_DENIED').length).toBeGreaterThanOrEqual(2);
    expect(s.status().ready).toBe(false);
    api.register();
    await s.firstIdentity();
    expect(s.status()).toEqual({ ready: true });
  });

  it('PermissionDenied on a live stream revokes the identity (fail closed) until a new SVID arrives', async () => {
    const api = await server();
    api.setX509(state());
    const { source: s, logs } = source(api.address);
    await s.firstIdentity();
    api.unregister();
    await expect.poll(() => s.status()).toEqual({ ready: false, reason: 'identity_revoked' });
    expect(logs.some((l) => l.event === 'identity_revoked')).toBe(true);
    api.register();
    await expect.poll(() => s.status(), { timeout: 5000 }).toEqual({ ready: true });
  });

  it('InvalidArgument is not retried', async () => {
    const api = await server();
    api.failNextWith = { code: grpc.status.INVALID_ARGUMENT, details: 'something is wrong with the request' };
    const { source: s, logs } = source(api.address);
    await expect(s.firstIdentity()).rejects.toMatchObject({ code: 'ERR_WORKLOAD_API' });
    expect(s.status()).toEqual({ ready: false, reason: 'workload_api_failed' });
    // A control with the same backoff against an agent that is not there: once it has ended its 5th stream
    // it has waited 0 + 50 + 100 + 200 ms, past the slowest retry (maxMs) the failed source could schedule.
    const control = source(`unix://${join(dir.path, 'no-agent-here.sock')}`);
    await expect
      .poll(() => control.logs.filter((l) => l.event === 'workload_api_stream_ended').length)
      .toBeGreaterThanOrEqual(5);
    expect(api.calls.filter((c) => c.method === 'FetchX509SVID')).toHaveLength(1);
    expect(logs.some((l) => l.event === 'workload_api_failed' && l.code === 'INVALID_ARGUMENT')).toBe(true);
  });

  it('reaches an agent whose socket path the address percent-encodes (a space in a directory name)', async () => {
    const api = await TestWorkloadApi.start(join(dir.path, `agent ${socketCounter++}.sock`));
    servers.push(api);
    api.setX509(state());
    const { source: s } = source(`unix://${api.socketPath.replaceAll(' ', '%20')}`);
    await s.firstIdentity();
    expect(s.current().svid.chain[0].serialNumber).toBe(svid.serialNumber);
  });

  it('each message replaces the state: a federated bundle missing from a later message is dropped', async () => {
    const api = await server();
    api.setX509(state(svid, { 'spiffe://partner.org': partner.certPem }));
    const { source: s } = source(api.address);
    await s.firstIdentity();
    expect([...s.current().bundles.keys()].sort()).toEqual(['example.org', 'partner.org']);
    api.setX509(state(svid));
    await expect.poll(() => [...s.current().bundles.keys()]).toEqual(['example.org']);
  });

  it('a federated bundle of no bytes is an empty bundle: the rest of the message applies, and its trust domain is trusted no more', async () => {
    const api = await server();
    api.setX509(state(svid, { 'spiffe://partner.org': partner.certPem }));
    const { source: s } = source(api.address);
    await s.firstIdentity();
    expect(s.current().bundles.get('partner.org')?.authorities).toHaveLength(1);
    // What SPIRE sends for a federated trust domain without X.509 roots (go-spiffe reads it as an empty bundle).
    const rotated = await issueSvid(ca, { id: ID });
    api.setX509(state(rotated, { 'spiffe://partner.org': '' }));
    await expect.poll(() => s.current().svid.chain[0].serialNumber).toBe(rotated.serialNumber);
    expect(s.current().bundles.get('partner.org')?.authorities).toEqual([]);
    expect(s.counters.rejected).toBe(0);
  });

  it('a malformed message is reported and ignored; the last good identity stays and the stream goes on', async () => {
    const api = await server();
    api.setX509(state());
    const { source: s, logs } = source(api.address);
    await s.firstIdentity();
    const other = await issueSvid(ca, { id: ID });
    const good = encodeX509(state());
    const bad = [
      { ...good, svids: [] },
      { ...good, svids: [{ ...good.svids[0], x509_svid: Buffer.from('not der') }] },
      { ...good, svids: [{ ...good.svids[0], x509_svid_key: pemToDer(other.keyPem) }] },
      { ...good, svids: [{ ...good.svids[0], spiffe_id: 'spiffe://example.org/someone-else' }] },
      { ...good, svids: [{ ...good.svids[0], bundle: pemToDer(partner.certPem) }] },
    ];
    for (const message of bad) api.pushRaw(message);
    await expect.poll(() => s.counters.rejected).toBe(bad.length);
    expect(logs.filter((l) => l.event === 'workload_api_update_rejected').map((l) => l.reason)).toEqual([
      'ERR_WORKLOAD_API_MESSAGE',
      'ERR_CERT_PARSE',
      'ERR_KEY_MISMATCH',
      'ERR_WORKLOAD_API_MESSAGE',
      'ERR_BUNDLE_INVALID',
    ]);
    expect(s.current().svid.chain[0].serialNumber).toBe(svid.serialNumber);
    api.setX509(state(other));
    await expect.poll(() => s.current().svid.chain[0].serialNumber).toBe(other.serialNumber);
  });

  it('keeps its identity while the agent is down and reconnects to pick up the next SVID', async () => {
    const api = await server();
    api.setX509(state());
    const { source: s } = source(api.address);
    await s.firstIdentity();
    await api.kill();
    await expect.poll(() => s.counters.reconnects).toBeGreaterThanOrEqual(2);
    expect(s.status()).toEqual({ ready: true });
    const next = await issueSvid(ca, { id: ID });
    api.setX509(state(next));
    await api.restart();
    await expect.poll(() => s.current().svid.chain[0].serialNumber, { timeout: 5000 }).toBe(next.serialNumber);
  });
});

describe('SVID selection (F12)', () => {
  it('takes the first SVID, or the first one with the hint', async () => {
    const names = ['foo', 'bar', 'baz', 'e1', 'e2'];
    const hints = ['internal', 'external', 'internal', '', ''];
    const svids = await Promise.all(names.map((n) => issueSvid(ca, { id: `spiffe://example.org/${n}` })));
    const message = encodeX509({
      svids: svids.map((s, i) => ({
        spiffeId: `spiffe://example.org/${names[i]}`,
        svid: s,
        bundlePem: ca.certPem,
        hint: hints[i],
      })),
    });
    expect(parseX509SvidResponse(message).svid.id.toString()).toBe('spiffe://example.org/foo');
    expect(parseX509SvidResponse(message, { hint: 'internal' }).svid.id.toString()).toBe('spiffe://example.org/foo');
    expect(parseX509SvidResponse(message, { hint: 'external' }).svid.id.toString()).toBe('spiffe://example.org/bar');
    expect(() => parseX509SvidResponse(message, { hint: 'nope' })).toThrow(SidecarError);
  });
});

describe('the JWT side of the client', () => {
  it('fetches JWT-SVIDs for an audience and streams JWT bundles (each message replaces the last)', async () => {
    const api = await server();
    api.jwtSvids = (audience) => [{ spiffe_id: ID, svid: `token-for-${audience.join(',')}`, hint: '' }];
    api.setJwtBundles({ 'spiffe://example.org': { keys: [{ kid: 'a' }] } });
    const client = new WorkloadApiClient(parseWorkloadEndpoint(api.address, 'test'));
    try {
      expect(await client.fetchJwtSvid(['orders'])).toEqual([{ spiffe_id: ID, svid: 'token-for-orders', hint: '' }]);
      await expect(client.fetchJwtSvid([])).rejects.toBeInstanceOf(SidecarError);
      const seen: string[][] = [];
      const stream = client.fetchJwtBundles();
      stream.on('data', (m: { bundles: Record<string, Buffer> }) => seen.push(Object.keys(m.bundles)));
      stream.on('error', () => {});
      await expect.poll(() => seen.length).toBe(1);
      api.setJwtBundles({ 'spiffe://partner.org': { keys: [] } });
      await expect.poll(() => seen).toEqual([['spiffe://example.org'], ['spiffe://partner.org']]);
      stream.cancel();
      expect(api.calls.filter((c) => c.method.startsWith('FetchJWT')).every((c) => c.header[0] === 'true')).toBe(true);
    } finally {
      client.close();
    }
  });
});
