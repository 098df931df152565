// Outbound HTTP/2 (`protocol=h2`): a gRPC client speaks cleartext HTTP/2 to its sidecar A on loopback; A
// carries the call over HTTP/2 with mTLS to sidecar B, which forwards it over h2c to the gRPC service. The
// service sees A's verified SPIFFE ID (never one the client made up); streaming works both ways with
// trailers; a remote that is not who the route names gets no call.
import * as grpc from '@grpc/grpc-js';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const A_ID = 'spiffe://example.org/ns/shop/sa/checkout';
const B_ID = 'spiffe://example.org/ns/shop/sa/inventory';

const bytes = {
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
};
const SERVICE = {
  whoAmI: { path: '/test.Inventory/WhoAmI', requestStream: false, responseStream: false, ...bytes },
  chat: { path: '/test.Inventory/Chat', requestStream: true, responseStream: true, ...bytes },
  refuse: { path: '/test.Inventory/Refuse', requestStream: false, responseStream: false, ...bytes },
} satisfies grpc.ServiceDefinition;
type GenericClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
const Client = grpc.makeGenericClientConstructor(SERVICE, 'Inventory') as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
) => GenericClient;

let dir: { path: string; remove: () => Promise<void> };
let server: grpc.Server;
let handled = 0;
let b: TestSidecar;
const started: TestSidecar[] = [];

async function files(name: string, id: string, ca: Awaited<ReturnType<typeof createDevCa>>): Promise<ServingFiles> {
  await mkdir(join(dir.path, name));
  return writeServingFiles(join(dir.path, name), await issueSvid(ca, { id }), ca.certPem);
}

async function sidecarA(expect: string): Promise<TestSidecar> {
  const ca = caForA;
  const f = await files(`a-${started.length}`, A_ID, ca);
  const a = await startTestSidecar({
    outbound: [`127.0.0.1:0=https://127.0.0.1:${b.port},id=${expect},protocol=h2`],
    'mtls-cert-file': f.certFile,
    'mtls-key-file': f.keyFile,
    'mtls-ca-file': f.caFile,
  });
  started.push(a);
  return a;
}

let caForA: Awaited<ReturnType<typeof createDevCa>>;

beforeAll(async () => {
  dir = await tempDir();
  caForA = await createDevCa({ trustDomain: 'example.org' });
  server = new grpc.Server();
  server.addService(SERVICE, {
    whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      handled++;
      done(null, Buffer.from(JSON.stringify(call.metadata.get('x-spiffe-id'))));
    },
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      handled++;
      call.on('data', (d: Buffer) => call.write(Buffer.from(`re:${d.toString()}`)));
      call.on('end', () => call.end());
    },
    refuse: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      handled++;
      done({ code: grpc.status.FAILED_PRECONDITION, details: 'out of stock' });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const fb = await files('b', B_ID, caForA);
  b = await startTestSidecar({
    upstream: `http://127.0.0.1:${port}`,
    'upstream-protocol': 'h2c',
    allow: [A_ID],
    'mtls-cert-file': fb.certFile,
    'mtls-key-file': fb.keyFile,
    'mtls-ca-file': fb.caFile,
  });
});

afterAll(async () => {
  for (const s of started) await s.close();
  await b?.close();
  server?.forceShutdown();
  await dir?.remove();
});

describe('gRPC through two sidecars carries the caller identity over HTTP/2 mTLS', () => {
  it('unary and bidi calls reach the service with A’s verified ID; a status comes back with its message', async () => {
    const a = await sidecarA(B_ID);
    const client = new Client(`127.0.0.1:${a.outboundAddresses()[0].port}`, grpc.credentials.createInsecure());
    try {
      const md = new grpc.Metadata();
      md.set('x-spiffe-id', 'spiffe://example.org/ns/kube-system/sa/admin');
      const who = await new Promise<string>((resolve, reject) =>
        client.whoAmI(Buffer.from('?'), md, (err: grpc.ServiceError | null, v: Buffer) =>
          err ? reject(err) : resolve(v.toString()),
        ),
      );
      expect(JSON.parse(who)).toEqual([A_ID]);

      const call = client.chat() as grpc.ClientDuplexStream<Buffer, Buffer>;
      const got: string[] = [];
      call.on('data', (d: Buffer) => got.push(d.toString()));
      for (const m of ['a', 'b', 'c']) call.write(Buffer.from(m));
      call.end();
      await new Promise<void>((resolve, reject) => {
        call.on('end', resolve);
        call.on('error', reject);
      });
      expect(got).toEqual(['re:a', 're:b', 're:c']);

      const refused = await new Promise<grpc.ServiceError>((resolve) =>
        client.refuse(Buffer.from('x'), (err: grpc.ServiceError) => resolve(err)),
      );
      expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(refused.details).toBe('out of stock');
    } finally {
      client.close();
    }
  });

  it('a remote that is not who the route names gets no call', async () => {
    const a = await sidecarA('spiffe://example.org/ns/shop/sa/someone-else');
    const client = new Client(`127.0.0.1:${a.outboundAddresses()[0].port}`, grpc.credentials.createInsecure());
    const before = handled;
    try {
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.whoAmI(Buffer.from('?'), (e: grpc.ServiceError | null) => resolve(e)),
      );
      expect(err?.code).not.toBe(grpc.status.OK);
      expect(err).not.toBeNull();
      expect(handled).toBe(before);
      expect(a.logs.some((l) => l.event === 'outbound_rejected' && l.reason === 'remote_identity_mismatch')).toBe(true);
    } finally {
      client.close();
    }
  });
});
