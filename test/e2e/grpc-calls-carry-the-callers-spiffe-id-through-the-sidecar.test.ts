// gRPC end to end with @grpc/grpc-js: a client with its SVID calls over TLS (HTTP/2), the sidecar verifies
// it and forwards over cleartext HTTP/2 (--upstream-protocol h2c) to an insecure grpc-js server on
// loopback. Unary, client-, server- and bidi-streaming calls work; the service finds the caller's
// verified SPIFFE ID in its metadata; statuses, messages and metadata come back as the service sent them.
import * as grpc from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { auditsAtLeast } from '../helpers/authz.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const SERVER_ID = 'spiffe://example.org/ns/shop/sa/inventory';
const ALLOWED_ID = 'spiffe://example.org/ns/shop/sa/checkout';
const DENIED_ID = 'spiffe://example.org/ns/shop/sa/stranger';
const SPOOFED = 'spiffe://example.org/ns/kube-system/sa/admin';

/** Raw bytes in and out: a generic service needs no .proto. */
const bytes = {
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
};
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/test.Inventory/${name}`,
  requestStream,
  responseStream,
  originalName: name,
  ...bytes,
});
const SERVICE = {
  whoAmI: method('WhoAmI', false, false),
  echo: method('Echo', false, false),
  refuse: method('Refuse', false, false),
  hang: method('Hang', false, false),
  upload: method('Upload', true, false),
  list: method('List', false, true),
  listThenFail: method('ListThenFail', false, true),
  chat: method('Chat', true, true),
} satisfies grpc.ServiceDefinition;
/** A method the server does not implement. */
const MISSING = { missing: method('Missing', false, false) } satisfies grpc.ServiceDefinition;

type GenericClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
type ClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => GenericClient;
const Client = grpc.makeGenericClientConstructor(SERVICE, 'Inventory') as unknown as ClientConstructor;
const MissingClient = grpc.makeGenericClientConstructor(MISSING, 'Inventory') as unknown as ClientConstructor;
/** A TLS server name (SNI may not be an IP address); the sidecar's SVID is checked by chain, not by name. */
const CHANNEL: grpc.ChannelOptions = { 'grpc.ssl_target_name_override': 'inventory.test' };

let dir: { path: string; remove: () => Promise<void> };
let files: ServingFiles;
let caPem: string;
let allowed: IssuedCertificate;
let denied: IssuedCertificate;
let server: grpc.Server;
let sidecar: TestSidecar;
let grpcPort: number;
/** Every handler invocation, by method, with the metadata the service saw. */
const calls: { method: string; ids: grpc.MetadataValue[]; metadata: grpc.Metadata }[] = [];
let cancelledHangs = 0;
/** The deadline the Hang handler was given (from grpc-timeout). */
let hangDeadline: grpc.Deadline | undefined;
const clients: grpc.Client[] = [];

function record(name: string, metadata: grpc.Metadata) {
  calls.push({ method: name, ids: metadata.get('x-spiffe-id'), metadata });
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

beforeAll(async () => {
  dir = await tempDir();
  const ca = await createDevCa({ trustDomain: 'example.org' });
  caPem = ca.certPem;
  files = await writeServingFiles(dir.path, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  [allowed, denied] = await Promise.all([issueSvid(ca, { id: ALLOWED_ID }), issueSvid(ca, { id: DENIED_ID })]);

  server = new grpc.Server();
  server.addService(SERVICE, {
    whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      record('WhoAmI', call.metadata);
      const header = new grpc.Metadata();
      header.set('x-served-by', 'inventory');
      call.sendMetadata(header);
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'kept');
      done(null, Buffer.from(JSON.stringify(call.metadata.get('x-spiffe-id'))), trailer);
    },
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      record('Echo', call.metadata);
      done(null, call.request);
    },
    refuse: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      record('Refuse', call.metadata);
      const metadata = new grpc.Metadata();
      metadata.set('x-reason', 'policy');
      done({ code: grpc.status.PERMISSION_DENIED, details: 'not for you: ünïcode ✓ 100%', metadata });
    },
    hang: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => {
      record('Hang', call.metadata);
      hangDeadline = call.getDeadline();
      call.on('cancelled', () => cancelledHangs++);
    },
    upload: (call: grpc.ServerReadableStream<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
      record('Upload', call.metadata);
      const hash = createHash('sha256');
      let count = 0;
      call.on('data', (m: Buffer) => {
        hash.update(m);
        count++;
      });
      call.on('end', () => done(null, Buffer.from(`${count} ${hash.digest('hex')}`)));
    },
    list: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      record('List', call.metadata);
      const n = Number(call.request.toString());
      let i = 0;
      const pump = () => {
        while (i < n) {
          const message = Buffer.alloc(512, i % 251);
          message.writeUInt32BE(i++, 0);
          if (!call.write(message)) {
            call.once('drain', pump);
            return;
          }
        }
        call.end();
      };
      pump();
    },
    listThenFail: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      record('ListThenFail', call.metadata);
      for (let i = 0; i < 3; i++) call.write(Buffer.from(`item ${i}`));
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'quota spent after 3' });
    },
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      record('Chat', call.metadata);
      call.on('data', (m: Buffer) => call.write(Buffer.concat([Buffer.from('re:'), m])));
      call.on('end', () => call.end());
    },
  });
  grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  sidecar = await startTestSidecar({
    upstream: `http://127.0.0.1:${grpcPort}`,
    'upstream-protocol': 'h2c',
    'mtls-cert-file': files.certFile,
    'mtls-key-file': files.keyFile,
    'mtls-ca-file': files.caFile,
    allow: [ALLOWED_ID],
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await sidecar?.close();
  server?.forceShutdown();
  await dir?.remove();
});

function credentials(cert: IssuedCertificate | undefined): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    Buffer.from(caPem),
    cert ? Buffer.from(cert.keyPem) : null,
    cert ? Buffer.from(cert.chainPem) : null,
    // The sidecar's SVID names a SPIFFE ID, not a DNS name: the chain is verified, the name is not.
    { checkServerIdentity: () => undefined },
  );
}

function client<C extends GenericClient>(
  Ctor: new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => C,
  cert: IssuedCertificate | undefined,
): C {
  const c = new Ctor(`127.0.0.1:${sidecar.port}`, credentials(cert), CHANNEL);
  clients.push(c);
  return c;
}

interface UnaryOutcome {
  error: grpc.ServiceError | null;
  value: Buffer | undefined;
  headers: grpc.Metadata | undefined;
  status: grpc.StatusObject | undefined;
}

function unary(
  c: GenericClient,
  name: string,
  request: Buffer,
  metadata = new grpc.Metadata(),
  options: grpc.CallOptions = {},
): Promise<UnaryOutcome> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    let status: grpc.StatusObject | undefined;
    let settled: Omit<UnaryOutcome, 'headers' | 'status'> | undefined;
    const finish = () => {
      if (settled && status) resolve({ ...settled, headers, status });
    };
    const call = c[name](request, metadata, options, (error: grpc.ServiceError | null, value?: Buffer) => {
      settled = { error, value };
      finish();
    }) as grpc.ClientUnaryCall;
    call.on('metadata', (m) => (headers = m));
    call.on('status', (s) => {
      status = s;
      finish();
    });
  });
}

function spoofed(): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('x-spiffe-id', SPOOFED);
  metadata.set('x-forwarded-client-cert', `URI=${SPOOFED}`);
  return metadata;
}

describe('grpc calls carry the caller’s spiffe id through the sidecar', () => {
  it('unary: the service sees the verified ID (a spoofed one replaced), headers and trailers come back', async () => {
    const c = client(Client, allowed);
    const out = await unary(c, 'whoAmI', Buffer.from('?'), spoofed());
    expect(out.error).toBeNull();
    expect(JSON.parse(out.value!.toString())).toEqual([ALLOWED_ID]);
    const seen = calls.at(-1)!;
    expect(seen.method).toBe('WhoAmI');
    expect(seen.ids).toEqual([ALLOWED_ID]);
    expect(JSON.stringify(seen.metadata.getMap())).not.toContain(SPOOFED);
    expect(out.headers?.get('x-served-by')).toEqual(['inventory']);
    expect(out.status?.code).toBe(grpc.status.OK);
    expect(out.status?.metadata.get('x-trailer')).toEqual(['kept']);
  });

  it('unary with a 2 MB message, intact', async () => {
    const c = client(Client, allowed);
    const payload = randomBytes(2 * 1024 * 1024);
    const out = await unary(c, 'echo', payload);
    expect(out.error).toBeNull();
    expect(sha256(out.value!)).toBe(sha256(payload));
  });

  it('bidi streaming, ping-pong: each reply arrives before the next message is sent', async () => {
    const c = client(Client, allowed);
    const call = c.chat(spoofed()) as grpc.ClientDuplexStream<Buffer, Buffer>;
    const replies: string[] = [];
    let waiting: ((m: Buffer) => void) | undefined;
    call.on('data', (m: Buffer) => {
      replies.push(m.toString());
      waiting?.(m);
    });
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => {});
    for (let i = 0; i < 40; i++) {
      const reply = new Promise<Buffer>((resolve) => (waiting = resolve));
      call.write(Buffer.from(`ping ${i}`));
      // Still open in both directions: the reply is the proof that nothing waits for the end of the call.
      expect((await reply).toString()).toBe(`re:ping ${i}`);
    }
    call.end();
    expect((await status).code).toBe(grpc.status.OK);
    expect(replies).toHaveLength(40);
    const seen = calls.filter((x) => x.method === 'Chat').at(-1)!;
    expect(seen.ids).toEqual([ALLOWED_ID]);
  });

  it('server streaming: 5000 messages in order, then OK', async () => {
    const c = client(Client, allowed);
    const call = c.list(Buffer.from('5000')) as grpc.ClientReadableStream<Buffer>;
    const indexes: number[] = [];
    call.on('data', (m: Buffer) => indexes.push(m.readUInt32BE(0)));
    call.on('error', () => {});
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    expect(status.code).toBe(grpc.status.OK);
    expect(indexes).toHaveLength(5000);
    expect(indexes.every((v, i) => v === i)).toBe(true);
  }, 30_000);

  it('client streaming: 300 messages arrive, counted and hashed by the service', async () => {
    const c = client(Client, allowed);
    const messages = Array.from({ length: 300 }, () => randomBytes(4096));
    const result = new Promise<{ error: grpc.ServiceError | null; value?: Buffer }>((resolve) => {
      const call = c.upload((error: grpc.ServiceError | null, value?: Buffer) =>
        resolve({ error, value }),
      ) as grpc.ClientWritableStream<Buffer>;
      for (const m of messages) call.write(m);
      call.end();
    });
    const { error, value } = await result;
    expect(error).toBeNull();
    expect(value!.toString()).toBe(`300 ${sha256(Buffer.concat(messages))}`);
  });

  it('many concurrent calls on one channel, each answered and each with the verified ID', async () => {
    const c = client(Client, allowed);
    const before = calls.length;
    const outs = await Promise.all(Array.from({ length: 50 }, (_, i) => unary(c, 'echo', Buffer.from(`#${i}`))));
    expect(outs.map((o) => o.value?.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `#${i}`));
    const seen = calls.slice(before);
    expect(seen).toHaveLength(50);
    for (const s of seen) expect(s.ids).toEqual([ALLOWED_ID]);
  });

  it('UNIMPLEMENTED (a trailers-only response) passes through', async () => {
    const c = client(MissingClient, allowed);
    const out = await unary(c, 'missing', Buffer.from('x'));
    expect(out.error?.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(out.error?.details).toMatch(/Missing/);
  });

  it('a handler’s PERMISSION_DENIED passes through with its message and metadata', async () => {
    const c = client(Client, allowed);
    const out = await unary(c, 'refuse', Buffer.from('x'));
    expect(out.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(out.error?.details).toBe('not for you: ünïcode ✓ 100%');
    expect(out.status?.metadata.get('x-reason')).toEqual(['policy']);
  });

  it('an error after streamed messages (status in trailers) passes through after the messages', async () => {
    const c = client(Client, allowed);
    const call = c.listThenFail(Buffer.from('')) as grpc.ClientReadableStream<Buffer>;
    const got: string[] = [];
    call.on('data', (m: Buffer) => got.push(m.toString()));
    call.on('error', () => {});
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    expect(got).toEqual(['item 0', 'item 1', 'item 2']);
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toBe('quota spent after 3');
  });

  it('a deadline cancels the call at the service too', async () => {
    const c = client(Client, allowed);
    const before = cancelledHangs;
    const out = await unary(c, 'hang', Buffer.from('x'), new grpc.Metadata(), {
      deadline: new Date(Date.now() + 500),
    });
    expect(out.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The deadline travelled as grpc-timeout: the service knows it too.
    const deadline = hangDeadline instanceof Date ? hangDeadline.getTime() : Number(hangDeadline);
    expect(deadline).toBeGreaterThan(Date.now() - 10_000);
    expect(deadline).toBeLessThan(Date.now() + 1000);
    await expect.poll(() => cancelledHangs, { timeout: 5000 }).toBe(before + 1);
  });

  it('a caller’s cancellation reaches the service (the sidecar resets the app’s stream)', async () => {
    const c = client(Client, allowed);
    const before = cancelledHangs;
    const hangsBefore = calls.filter((x) => x.method === 'Hang').length;
    // No deadline: only the sidecar can tell the service that the caller gave up.
    const call = c.hang(Buffer.from('x'), new grpc.Metadata(), () => {}) as grpc.ClientUnaryCall;
    await expect.poll(() => calls.filter((x) => x.method === 'Hang').length).toBe(hangsBefore + 1);
    expect(hangDeadline === Infinity || hangDeadline === undefined).toBe(true);
    call.cancel();
    await expect.poll(() => cancelledHangs, { timeout: 5000 }).toBe(before + 1);
  });

  it('a denied caller gets a non-OK status and no handler runs', async () => {
    const before = calls.length;
    const from = sidecar.logs.length;
    const c = client(Client, denied);
    const out = await unary(c, 'whoAmI', Buffer.from('?'), spoofed());
    expect(out.error).not.toBeNull();
    expect(out.error?.code).not.toBe(grpc.status.OK);
    expect(out.error?.code).toBe(grpc.status.PERMISSION_DENIED);
    const stream = c.chat() as grpc.ClientDuplexStream<Buffer, Buffer>;
    stream.on('data', () => {});
    stream.on('error', () => {});
    stream.write(Buffer.from('hi'));
    stream.end();
    const status = await new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
    expect(status.code).not.toBe(grpc.status.OK);
    expect(calls.length).toBe(before);
    // The access lines are written once each exchange is over: waited for (two calls, two lines).
    const lines = await auditsAtLeast(sidecar.logs, 2, from);
    expect(lines.at(-1)).toMatchObject({ decision: 'deny', peer: DENIED_ID });
  });

  it('a caller without a certificate gets UNAVAILABLE and no handler runs', async () => {
    const before = calls.length;
    const c = client(Client, undefined);
    const out = await unary(c, 'whoAmI', Buffer.from('?'), new grpc.Metadata(), { deadline: Date.now() + 5000 });
    expect(out.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(calls.length).toBe(before);
  });

  it('after the service restarts on its port, calls work again (the h2c connection is re-made)', async () => {
    const echoOnly = () => {
      const srv = new grpc.Server();
      srv.addService(SERVICE, {
        echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) =>
          done(null, call.request),
      });
      return srv;
    };
    const bind = (srv: grpc.Server, port: number) =>
      new Promise<number>((resolve, reject) =>
        srv.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
          err ? reject(err) : resolve(p),
        ),
      );
    let first = echoOnly();
    const port = await bind(first, 0);
    const front = await startTestSidecar({
      upstream: `http://127.0.0.1:${port}`,
      'upstream-protocol': 'h2c',
      'mtls-cert-file': files.certFile,
      'mtls-key-file': files.keyFile,
      'mtls-ca-file': files.caFile,
      allow: [ALLOWED_ID],
    });
    try {
      const c = new Client(`127.0.0.1:${front.port}`, credentials(allowed), CHANNEL);
      clients.push(c);
      expect((await unary(c, 'echo', Buffer.from('one'))).value?.toString()).toBe('one');
      first.forceShutdown();
      const down = await unary(c, 'echo', Buffer.from('two'));
      expect(down.error?.code).toBe(grpc.status.UNAVAILABLE);
      first = echoOnly();
      await bind(first, port);
      await expect
        .poll(async () => (await unary(c, 'echo', Buffer.from('three'))).value?.toString(), { timeout: 5000 })
        .toBe('three');
    } finally {
      first.forceShutdown();
      await front.close();
    }
  });

  describe('--upstream-timeout 1s bounds the wait for an answer, not the length of a streaming call', () => {
    let timed: TestSidecar;
    beforeAll(async () => {
      timed = await startTestSidecar({
        upstream: `http://127.0.0.1:${grpcPort}`,
        'upstream-protocol': 'h2c',
        'upstream-timeout': '1s',
        'mtls-cert-file': files.certFile,
        'mtls-key-file': files.keyFile,
        'mtls-ca-file': files.caFile,
        allow: [ALLOWED_ID],
      });
    });
    afterAll(() => timed?.close());

    const timedClient = () => {
      const c = new Client(`127.0.0.1:${timed.port}`, credentials(allowed), CHANNEL);
      clients.push(c);
      return c;
    };

    it('control: a complete request the service never answers fails after about a second', async () => {
      const started = performance.now();
      const out = await unary(timedClient(), 'hang', Buffer.from('x'), new grpc.Metadata(), {
        deadline: Date.now() + 10_000,
      });
      expect(out.error).not.toBeNull();
      expect(out.error?.code).not.toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(performance.now() - started).toBeGreaterThan(900);
      expect(performance.now() - started).toBeLessThan(8000);
    });

    it('a client-streaming upload that lasts 2 s completes', async () => {
      const c = timedClient();
      const result = new Promise<{ error: grpc.ServiceError | null; value?: Buffer }>((resolve) => {
        const call = c.upload((error: grpc.ServiceError | null, value?: Buffer) =>
          resolve({ error, value }),
        ) as grpc.ClientWritableStream<Buffer>;
        let n = 0;
        const timer = setInterval(() => {
          call.write(Buffer.from(`part ${n}`));
          if (++n === 10) {
            clearInterval(timer);
            call.end();
          }
        }, 200);
      });
      const { error, value } = await result;
      expect(error).toBeNull();
      expect(value!.toString()).toMatch(/^10 /);
    }, 15_000);

    it('a bidi call whose caller speaks first after 1.5 s gets its answer', async () => {
      const call = timedClient().chat() as grpc.ClientDuplexStream<Buffer, Buffer>;
      const replies: string[] = [];
      call.on('data', (m: Buffer) => replies.push(m.toString()));
      call.on('error', () => {});
      const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      await new Promise((r) => setTimeout(r, 1500));
      call.write(Buffer.from('late hello'));
      call.end();
      expect((await status).code).toBe(grpc.status.OK);
      expect(replies).toEqual(['re:late hello']);
    }, 15_000);
  });
});
