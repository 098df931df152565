// The client's hand-written Workload API codec (workload-api-messages.ts) against proto-loader loading our
// workload.proto, the reference: generated messages encoded by proto-loader decode to what proto-loader
// decodes; our requests are proto-loader's bytes. Then the wire-format rejections, each with its reason,
// and one malformed frame over a real gRPC stream on a Unix socket: the identity source keeps its identity.
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { SidecarError } from '../../src/errors.js';
import { SECURITY_HEADER, WorkloadApiClient } from '../../src/identity/workload-api-client.js';
import { workloadApiDefinition } from '../../src/identity/workload-api-definition.js';
import { WorkloadApiJwtBundles } from '../../src/identity/workload-api-jwt-bundles.js';
import {
  decodeJwtBundlesResponse,
  decodeJwtSvidResponse,
  decodeX509SvidResponse,
  encodeEmptyRequest,
  encodeJwtSvidRequest,
} from '../../src/identity/workload-api-messages.js';
import { WorkloadApiIdentitySource } from '../../src/identity/workload-api-source.js';
import { parseWorkloadEndpoint } from '../../src/identity/workload-endpoint.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { capturingLogger } from '../helpers/sidecar.js';
import { encodeX509 } from '../helpers/workload-api-server.js';

type Method = grpc.MethodDefinition<unknown, unknown>;
const service = () => (workloadApiDefinition().SpiffeWorkloadAPI as grpc.ServiceClientConstructor).service;
const method = (name: string) => service()[name] as Method;

// Any Unicode text (no lone surrogates: they have no UTF-8), any bytes; map keys other than `__proto__`,
// which protobufjs's toObject turns into a prototype (ours keeps it as a key: tested below).
const text = fc.string({ unit: 'binary', maxLength: 24 });
const bytes = fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b));
const bytesMap = fc.dictionary(
  text.filter((k) => k !== '__proto__'),
  bytes,
  { maxKeys: 4 },
);
const x509SvidResponse = fc.record({
  svids: fc.array(fc.record({ spiffe_id: text, x509_svid: bytes, x509_svid_key: bytes, bundle: bytes, hint: text }), {
    maxLength: 3,
  }),
  crl: fc.array(bytes, { maxLength: 2 }),
  federated_bundles: bytesMap,
});
const jwtSvidResponse = fc.record({
  svids: fc.array(fc.record({ spiffe_id: text, svid: text, hint: text }), { maxLength: 3 }),
});

/** Unknown fields (numbers 6..2^29-1) of every wire type, encoded. */
const varint = (n: bigint) => {
  const out: number[] = [];
  while (n > 0x7fn) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  return [...out, Number(n)];
};
const unknownField = fc
  .tuple(fc.integer({ min: 6, max: 2 ** 29 - 1 }), fc.constantFrom(0, 1, 2, 5), fc.bigInt(0n, 2n ** 64n - 1n), bytes)
  .map(([field, wire, number, payload]) => {
    const tag = varint(BigInt(field) * 8n + BigInt(wire));
    if (wire === 0) return Buffer.from([...tag, ...varint(number)]);
    if (wire === 1) return Buffer.from([...tag, 1, 2, 3, 4, 5, 6, 7, 8]);
    if (wire === 5) return Buffer.from([...tag, 1, 2, 3, 4]);
    return Buffer.concat([Buffer.from([...tag, ...varint(BigInt(payload.length))]), payload]);
  });

describe('the Workload API codec decodes what proto-loader encodes, as proto-loader decodes it', () => {
  it('X509SVIDResponse, JWTSVIDResponse and JWTBundlesResponse: 300 generated messages each', () => {
    const cases: [string, fc.Arbitrary<object>, (b: Buffer) => unknown][] = [
      ['FetchX509SVID', x509SvidResponse, decodeX509SvidResponse],
      ['FetchJWTSVID', jwtSvidResponse, decodeJwtSvidResponse],
      ['FetchJWTBundles', fc.record({ bundles: bytesMap }), decodeJwtBundlesResponse],
    ];
    for (const [name, arbitrary, decode] of cases) {
      const { responseSerialize, responseDeserialize } = method(name);
      fc.assert(
        fc.property(arbitrary, (message) => {
          const wire = responseSerialize(message);
          expect(decode(wire)).toEqual(responseDeserialize(wire));
        }),
        { numRuns: 300 },
      );
    }
  });

  it('skips unknown fields of every wire type, wherever they are, as proto-loader does', () => {
    const { responseSerialize, responseDeserialize } = method('FetchX509SVID');
    fc.assert(
      fc.property(x509SvidResponse, fc.array(unknownField, { maxLength: 4 }), (message, unknown) => {
        const wire = Buffer.concat([...unknown, responseSerialize(message), ...unknown]);
        expect(decodeX509SvidResponse(wire)).toEqual(responseDeserialize(wire));
        expect(decodeX509SvidResponse(wire)).toEqual(message);
      }),
      { numRuns: 300 },
    );
  });

  it('a singular field given twice: the last wins; a map key given twice: the last wins', () => {
    // X509SVIDResponse { svids { spiffe_id "a" spiffe_id "b" } federated_bundles { "k": 01 } federated_bundles { "k": 02 } }
    const svid = Buffer.from([0x0a, 1, 0x61, 0x0a, 1, 0x62]);
    const entry = (v: number) => Buffer.from([0x0a, 1, 0x6b, 0x12, 1, v]);
    const wire = Buffer.concat([
      Buffer.from([0x0a, svid.length]),
      svid,
      Buffer.from([0x1a, 6]),
      entry(1),
      Buffer.from([0x1a, 6]),
      entry(2),
    ]);
    const ours = decodeX509SvidResponse(wire);
    expect(ours).toEqual(method('FetchX509SVID').responseDeserialize(wire));
    expect(ours.svids[0].spiffe_id).toBe('b');
    expect(ours.federated_bundles.k).toEqual(Buffer.from([2]));
  });

  it('a leading BOM is a character of the string (as in Go and protobufjs), not dropped', () => {
    const id = Buffer.from('\uFEFFspiffe://example.org/w');
    const svid = Buffer.concat([Buffer.from([0x0a, id.length]), id]);
    const wire = Buffer.concat([Buffer.from([0x0a, svid.length]), svid]);
    expect(decodeX509SvidResponse(wire).svids[0].spiffe_id).toBe('\uFEFFspiffe://example.org/w');
    expect(decodeX509SvidResponse(wire)).toEqual(method('FetchX509SVID').responseDeserialize(wire));
  });

  it('a map entry without its value has an empty one; without its key, the key ""', () => {
    const key = Buffer.from('spiffe://a.org');
    const noValue = Buffer.concat([Buffer.from([0x0a, key.length]), key]);
    const noKey = Buffer.from([0x12, 1, 9]);
    const wire = Buffer.concat([
      Buffer.from([0x0a, noValue.length]),
      noValue,
      Buffer.from([0x0a, noKey.length]),
      noKey,
    ]);
    expect({ ...decodeJwtBundlesResponse(wire).bundles }).toEqual({
      'spiffe://a.org': Buffer.alloc(0),
      '': Buffer.from([9]),
    });
  });

  it('a 20 kB bundle (a three-byte length) decodes as proto-loader decodes it', () => {
    const { responseSerialize, responseDeserialize } = method('FetchJWTBundles');
    const wire = responseSerialize({ bundles: { 'spiffe://a.org': Buffer.alloc(20_000, 7) } });
    expect(decodeJwtBundlesResponse(wire)).toEqual(responseDeserialize(wire));
    expect(decodeJwtBundlesResponse(wire).bundles['spiffe://a.org'].length).toBe(20_000);
  });

  it('a map key `__proto__` is a key, not a prototype', () => {
    const key = Buffer.from('__proto__');
    const entry = Buffer.concat([Buffer.from([0x0a, key.length]), key, Buffer.from([0x12, 1, 7])]);
    const bundles = decodeJwtBundlesResponse(Buffer.concat([Buffer.from([0x0a, entry.length]), entry])).bundles;
    expect(Object.entries(bundles)).toEqual([['__proto__', Buffer.from([7])]]);
    expect(Object.getPrototypeOf(bundles)).toBe(null);
  });

  it('our requests are the bytes proto-loader writes, and it reads them back', () => {
    const { requestSerialize, requestDeserialize } = method('FetchJWTSVID');
    fc.assert(
      fc.property(fc.record({ audience: fc.array(text, { maxLength: 4 }), spiffe_id: text }), (request) => {
        const ours = encodeJwtSvidRequest(request);
        // proto3 leaves a '' out (Go's protobuf does too); protobufjs writes a field that is set, even to ''.
        expect(ours).toEqual(requestSerialize(request.spiffe_id === '' ? { audience: request.audience } : request));
        expect(requestDeserialize(ours)).toEqual(request);
      }),
      { numRuns: 300 },
    );
    for (const name of ['FetchX509SVID', 'FetchJWTBundles']) {
      expect(encodeEmptyRequest()).toEqual(method(name).requestSerialize({}));
    }
  });
});

describe('malformed protobuf is refused, naming what is wrong', () => {
  const svidWith = (inner: number[]) => [0x0a, inner.length, ...inner];
  const cases: [string, number[], RegExp][] = [
    ['a tag cut short', [0x80], /varint runs past the end/],
    ['a tag longer than 5 bytes', [0xff, 0xff, 0xff, 0xff, 0xff, 0x01], /varint is longer than 5 bytes/],
    ['a length past the end', [0x0a, 0x05, 0x01], /field 1 is 5 bytes, past the end/],
    ['a length cut short', [0x0a, 0x80], /varint runs past the end/],
    ['field number 0', [0x02, 0x00], /field number 0/],
    ['a field number above 2^29 - 1', [0x82, 0x80, 0x80, 0x80, 0x10, 0x00], /field number 536870912 /],
    ['a group start (wire type 3)', [0x4b], /wire type 3/],
    ['a group end (wire type 4)', [0x4c], /wire type 4/],
    ['wire type 6', [0x4e], /wire type 6/],
    ['wire type 7', [0x4f], /wire type 7/],
    ['a known field with the wrong wire type', [0x08, 0x01], /field 1 must be length-delimited/],
    ['an unknown fixed64 cut short', [0x49, 1, 2, 3], /field 9 runs past the end/],
    ['an unknown fixed32 cut short', [0x4d, 1, 2], /field 9 runs past the end/],
    ['an unknown varint of 11 bytes', [0x48, ...Array(10).fill(0xff), 0x01], /varint overflows 64 bits/],
    ['an unknown varint past 64 bits', [0x48, ...Array(9).fill(0xff), 0x7f], /varint overflows 64 bits/],
    ['a length of 2^32', [0x0a, 0x80, 0x80, 0x80, 0x80, 0x10], /field 1 is 4294967296 bytes, past the end/],
    [
      'invalid UTF-8 in an SVID’s spiffe_id',
      svidWith([0x0a, 2, 0xc3, 0x28]),
      /field 1 is a string but not valid UTF-8/,
    ],
    [
      'an overlong UTF-8 encoding in a hint',
      svidWith([0x2a, 2, 0xc0, 0xaf]),
      /field 5 is a string but not valid UTF-8/,
    ],
    ['a UTF-8 surrogate in a spiffe_id', svidWith([0x0a, 3, 0xed, 0xa0, 0x80]), /not valid UTF-8/],
    ['an SVID whose bytes are cut short', svidWith([0x12, 0x09, 0x01]), /X509SVID: .*field 2 is 9 bytes/],
    [
      'a federated bundle key that is not UTF-8',
      [0x1a, 4, 0x0a, 2, 0xff, 0xfe],
      /federated_bundles: .*not valid UTF-8/,
    ],
  ];
  it.each(cases)('%s', (_, wire, reason) => {
    expect(() => decodeX509SvidResponse(Buffer.from(wire))).toThrow(
      expect.objectContaining({ code: 'ERR_WORKLOAD_API_MESSAGE', message: expect.stringMatching(reason) }),
    );
  });

  it('any bytes at all: a message or ERR_WORKLOAD_API_MESSAGE, never another exception', () => {
    const decoders = [decodeX509SvidResponse, decodeJwtBundlesResponse, decodeJwtSvidResponse];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.constantFrom(...decoders), (wire, decode) => {
        try {
          decode(Buffer.from(wire));
        } catch (err) {
          expect(err).toBeInstanceOf(SidecarError);
          expect((err as SidecarError).code).toBe('ERR_WORKLOAD_API_MESSAGE');
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('the UTF-8 decoder reads valid text again right after refusing invalid text', () => {
    expect(() => decodeJwtSvidResponse(Buffer.from([0x0a, 3, 0x0a, 1, 0xc3]))).toThrow(/not valid UTF-8/);
    expect(decodeJwtSvidResponse(Buffer.from([0x0a, 4, 0x0a, 2, 0xc3, 0xa9])).svids[0].spiffe_id).toBe('é');
  });

  it('the JWT responses too: a truncated JWT-SVID, a bundle map entry with a wrong wire type', () => {
    expect(() => decodeJwtSvidResponse(Buffer.from([0x0a, 3, 0x12, 5, 0x41]))).toThrow(/JWTSVID: .*past the end/);
    expect(() => decodeJwtBundlesResponse(Buffer.from([0x0a, 2, 0x10, 0x01]))).toThrow(
      /JWTBundlesResponse.bundles: .*field 2 must be length-delimited/,
    );
  });
});

describe('a malformed frame from the agent over real gRPC', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let ca: CertificateAuthority;
  let svid: IssuedCertificate;
  const closers: (() => Promise<void> | void)[] = [];
  beforeAll(async () => {
    dir = await tempDir();
    ca = await createDevCa({ trustDomain: 'example.org' });
    svid = await issueSvid(ca, { id: 'spiffe://example.org/workload' });
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  afterAll(() => dir.remove());

  /** A malformed frame: an SVID (or JWT-SVID) whose spiffe_id is not UTF-8, or a bundle key that is not. */
  const NOT_UTF8 = Buffer.from([0x0a, 4, 0x0a, 2, 0xc3, 0x28]);

  /**
   * An agent that writes the bytes it is given, as they are, on real gRPC over a Unix socket: `streams`
   * says what each new stream of a method gets (by its index), `unary` what FetchJWTSVID answers.
   */
  async function rawAgent(handlers: {
    FetchX509SVID?: (stream: number) => Buffer[];
    FetchJWTBundles?: (stream: number) => Buffer[];
    FetchJWTSVID?: Buffer;
  }) {
    const calls: { method: string; header: unknown[] }[] = [];
    const server = new grpc.Server();
    const raw = (name: string) => ({ ...method(name), responseSerialize: (b: Buffer) => b });
    const streaming = (name: 'FetchX509SVID' | 'FetchJWTBundles') => {
      let opened = 0;
      return (call: grpc.ServerWritableStream<unknown, Buffer>) => {
        calls.push({ method: name, header: call.metadata.get(SECURITY_HEADER) });
        for (const frame of handlers[name]?.(opened++) ?? []) call.write(frame);
      };
    };
    server.addService(
      {
        FetchX509SVID: raw('FetchX509SVID'),
        FetchJWTBundles: raw('FetchJWTBundles'),
        FetchJWTSVID: raw('FetchJWTSVID'),
      },
      {
        FetchX509SVID: streaming('FetchX509SVID'),
        FetchJWTBundles: streaming('FetchJWTBundles'),
        FetchJWTSVID: (call: grpc.ServerUnaryCall<unknown, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
          calls.push({ method: 'FetchJWTSVID', header: call.metadata.get(SECURITY_HEADER) });
          callback(null, handlers.FetchJWTSVID);
        },
      },
    );
    const socket = join(dir.path, `raw-agent-${closers.length}-${Date.now()}.sock`);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    closers.push(() => server.forceShutdown());
    return { endpoint: parseWorkloadEndpoint(`unix://${socket}`, 'test'), calls };
  }

  it('X.509: ends the stream with INTERNAL; the source keeps the identity it had and reconnects', async () => {
    const good = method('FetchX509SVID').responseSerialize(
      encodeX509({ svids: [{ spiffeId: 'spiffe://example.org/workload', svid, bundlePem: ca.certPem }] }),
    );
    const agent = await rawAgent({ FetchX509SVID: (stream) => (stream === 0 ? [good, NOT_UTF8] : [good]) });
    const { log, logs } = capturingLogger();
    const source = WorkloadApiIdentitySource.start({
      endpoint: agent.endpoint,
      log,
      backoff: { initialMs: 20, maxMs: 50 },
    });
    closers.push(() => source.close());
    expect((await source.firstIdentity()).svid.chain[0].serialNumber).toBe(svid.serialNumber);
    await expect.poll(() => agent.calls.length).toBe(2);
    expect(agent.calls.map((c) => c.header)).toEqual([['true'], ['true']]);
    const ended = logs.find((l) => l.event === 'workload_api_stream_ended');
    expect(ended?.code).toBe('INTERNAL');
    expect(ended?.details).toMatch(/^Response message parsing error: .*field 1 is a string but not valid UTF-8/);
    expect(source.status()).toEqual({ ready: true });
    expect(source.current().svid.chain[0].serialNumber).toBe(svid.serialNumber);
  });

  it('JWT bundles: a good message then an unreadable one, on every stream, backs off instead of spinning', async () => {
    const good = method('FetchJWTBundles').responseSerialize({
      bundles: { 'spiffe://example.org': Buffer.from(JSON.stringify({ keys: [] })) },
    });
    const agent = await rawAgent({ FetchJWTBundles: () => [good, NOT_UTF8] });
    const { log, logs } = capturingLogger();
    const client = new WorkloadApiClient(agent.endpoint);
    const bundles = new WorkloadApiJwtBundles(client, log, { initialMs: 20, maxMs: 1000 });
    closers.push(() => client.close());
    closers.push(() => bundles.close());
    const ends = () => logs.filter((l) => l.event === 'workload_api_stream_ended');
    await expect.poll(() => ends().length, { timeout: 10_000 }).toBeGreaterThanOrEqual(5);
    // Each stream delivered an accepted message, and yet the delay doubles: it was not a stream that lived.
    expect(
      ends()
        .slice(0, 5)
        .map((l) => l.retry_in_ms),
    ).toEqual([0, 20, 40, 80, 160]);
    expect(ends()[0]).toMatchObject({ rpc: 'FetchJWTBundles', code: 'INTERNAL' });
    expect(ends()[0].details).toMatch(/JWTBundlesResponse.bundles: .*not valid UTF-8/);
    expect([...(bundles.current()?.keys() ?? [])]).toEqual(['example.org']);
  });

  it('JWT-SVID: an unreadable answer fails the call with INTERNAL', async () => {
    const agent = await rawAgent({ FetchJWTSVID: NOT_UTF8 });
    const client = new WorkloadApiClient(agent.endpoint);
    closers.push(() => client.close());
    const err = await client.fetchJwtSvid(['orders']).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(grpc.status.INTERNAL);
    expect(err?.details).toMatch(/JWTSVID: .*field 1 is a string but not valid UTF-8/);
    expect(agent.calls).toEqual([{ method: 'FetchJWTSVID', header: ['true'] }]);
  });
});
