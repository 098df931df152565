// `--protocol tcp --proxy-protocol v2`: before the first relayed byte, the app receives a PROXY protocol v2
// header with the caller's address and ours, PP2_TYPE_SSL, and the caller's verified SPIFFE ID in TLV 0xE0.
// The header is read by the test's own parser (written from HAProxy's spec), not by the sidecar's encoder.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import type { RawOptions } from '../../src/config.js';
import type { ClientCert } from '../helpers/client.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from '../helpers/pki.js';
import {
  canonicalIp,
  type ParsedProxyHeader,
  parseProxyV2,
  parseSslTlv,
  PP2_CLIENT_CERT_CONN,
  PP2_CLIENT_CERT_SESS,
  PP2_CLIENT_SSL,
  PP2_SIGNATURE,
  PP2_SUBTYPE_SSL_VERSION,
  PP2_TYPE_SSL,
} from '../helpers/proxy-protocol-parser.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import {
  connectTls,
  type Digest,
  HALF_OPEN,
  readAll,
  sha256,
  startTcpApp,
  writeRandom,
} from '../helpers/tcp-echo-app.js';

const SERVER_ID = 'spiffe://example.org/ns/db/sa/postgres';
const CALLER_ID = 'spiffe://example.org/ns/shop/sa/orders';
const PARTNER_ID = 'spiffe://partner.org/ns/billing/sa/invoices';
/** SPIFFE-ID.md §2.3: 2048 bytes is the longest an implementation must support (a TLV length above 255). */
const LONG_ID = `spiffe://example.org/${'l'.repeat(2048 - 'spiffe://example.org/'.length)}`;
const TLV_SPIFFE_ID = 0xe0;

interface Arrival {
  header: ParsedProxyHeader;
  /** Every byte after the header, hashed, once the caller ended. */
  payload: Promise<Digest>;
  /** The app's socket. */
  socket: Socket;
}

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let files: ServingFiles & { partnerBundleFile: string };
let caller: IssuedCertificate;
let partner: IssuedCertificate;
let longCaller: IssuedCertificate;
/** What the app saw, per connection, in order. */
const arrivals: Arrival[] = [];
/** Parse failures in the app (a test fails on any). */
const appErrors: Error[] = [];
/** After its header, the app echoes by default; a test may make it greet first instead. */
let greeting: string | undefined;
let app: Awaited<ReturnType<typeof startTcpApp>>;
let sidecar: TestSidecar;
const cleanups: (() => Promise<void>)[] = [];

/**
 * The app: reads the header with the test's parser (whatever the chunking: the header may arrive split or
 * together with payload), then hashes and echoes every byte after it.
 */
function proxyAwareApp(socket: Socket): void {
  let pending = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    let parsed: ReturnType<typeof parseProxyV2>;
    try {
      parsed = parseProxyV2(pending);
    } catch (err) {
      appErrors.push(err as Error);
      socket.destroy();
      return;
    }
    if (!parsed) return;
    socket.off('data', onData);
    const { header, rest } = parsed;
    const hash = createHash('sha256').update(rest);
    let length = rest.length;
    socket.on('data', (d: Buffer) => {
      hash.update(d);
      length += d.length;
    });
    const payload = new Promise<Digest>((resolve, reject) => {
      socket.once('end', () => resolve({ length, sha256: hash.digest('hex') }));
      socket.once('error', reject);
    });
    payload.catch(() => {});
    arrivals.push({ header, payload, socket });
    if (greeting !== undefined) socket.write(greeting);
    socket.write(rest);
    socket.pipe(socket);
  };
  socket.on('data', onData);
}

async function ppSidecar(extra: RawOptions = {}, upstream = app.upstream): Promise<TestSidecar> {
  const started = await startTestSidecar({
    protocol: 'tcp',
    'proxy-protocol': 'v2',
    upstream,
    'mtls-cert-file': files.certFile,
    'mtls-key-file': files.keyFile,
    'mtls-ca-file': files.caFile,
    'federated-bundle': [`partner.org=${files.partnerBundleFile}`],
    allow: [CALLER_ID, PARTNER_ID, LONG_ID],
    ...extra,
  });
  cleanups.push(() => started.close());
  return started;
}

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  const partnerCa = await createDevCa({ trustDomain: 'partner.org' });
  const serving = await writeServingFiles(dir.path, await issueSvid(ca, { id: SERVER_ID }), ca.certPem);
  const partnerBundleFile = join(dir.path, 'partner.org.pem');
  await writeFile(partnerBundleFile, partnerCa.certPem);
  files = { ...serving, partnerBundleFile };
  [caller, partner, longCaller] = await Promise.all([
    issueSvid(ca, { id: CALLER_ID }),
    issueSvid(partnerCa, { id: PARTNER_ID }),
    issueSvid(ca, { id: LONG_ID }),
  ]);
  app = await startTcpApp(proxyAwareApp);
  sidecar = await ppSidecar();
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await app?.close();
  await dir?.remove();
});

/** Connects, sends `payload` and ends; resolves with the header the app parsed and the echo. */
async function call(port: number, cert: ClientCert, payload: Buffer, host = '127.0.0.1', client?: TLSSocket) {
  const before = arrivals.length;
  const socket = client ?? (await connectTls(port, cert, host));
  const localPort = socket.localPort;
  const echoed = readAll(socket);
  socket.end(payload);
  const back = await echoed;
  await expect.poll(() => arrivals.length).toBe(before + 1);
  const arrival = arrivals[before];
  expect(await arrival.payload).toEqual({ length: payload.length, sha256: sha256(payload) });
  expect(back).toEqual({ length: payload.length, sha256: sha256(payload) });
  return { localPort, header: arrival.header };
}

function tlv(header: ParsedProxyHeader, type: number): Buffer[] {
  return header.tlvs.filter((t) => t.type === type).map((t) => t.value);
}

describe('the test parser (HAProxy proxy-protocol.txt §2.2) reads a header built by hand', () => {
  it('decodes addresses, ports and TLVs of a header written byte by byte, and refuses malformed ones', () => {
    const bytes = Buffer.concat([
      PP2_SIGNATURE,
      Buffer.from([0x21, 0x11, 0x00, 12 + (3 + 5 + 3 + 3) + (3 + 4)]),
      Buffer.from([10, 0, 0, 1, 192, 168, 1, 2, 0x1f, 0x90, 0x01, 0xbb]),
      Buffer.from([0x20, 0x00, 5 + 3 + 3, 0x07, 0, 0, 0, 0, 0x21, 0x00, 0x03]),
      Buffer.from('TLS'),
      Buffer.from([0xe0, 0x00, 0x04]),
      Buffer.from('abcd'),
      Buffer.from('payload'),
    ]);
    const parsed = parseProxyV2(bytes)!;
    expect(parsed.header).toMatchObject({
      version: 2,
      command: 1,
      family: 0x11,
      source: { address: '10.0.0.1', port: 8080 },
      destination: { address: '192.168.1.2', port: 443 },
    });
    expect(parseSslTlv(tlv(parsed.header, PP2_TYPE_SSL)[0])).toEqual({
      client: 0x07,
      verify: 0,
      subTlvs: [{ type: 0x21, value: Buffer.from('TLS') }],
    });
    expect(tlv(parsed.header, 0xe0)).toEqual([Buffer.from('abcd')]);
    expect(parsed.rest.toString()).toBe('payload');
    expect(parseProxyV2(bytes.subarray(0, 20))).toBeUndefined();
    const badLength = Buffer.from(bytes);
    badLength[15] -= 1;
    expect(() => parseProxyV2(badLength)).toThrow(/TLV/);
    expect(() => parseProxyV2(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'))).toThrow(/signature/);
    expect(canonicalIp('0:0:0:0:0:0:0:1')).toBe('::1');
    expect(canonicalIp('::ffff:127.0.0.1')).toBe('127.0.0.1');
  });
});

describe('proxy protocol v2 tells a tcp app who called', () => {
  it('sends PROXY, TCP4, the caller’s address and ours, PP2_TYPE_SSL and the SPIFFE ID, then the bytes intact', async () => {
    const payload = Buffer.concat([Buffer.from('\r\n\r\n\0\r\nQUIT\n'), Buffer.alloc(3 * 1024 * 1024, 0xab)]);
    const client = await connectTls(sidecar.port, caller);
    const local = { address: client.localAddress, port: client.localPort };
    const version = client.getProtocol();
    const { header } = await call(sidecar.port, caller, payload, undefined, client);
    expect(header.verCmd).toBe(0x21);
    expect(header.family).toBe(0x11);
    expect(header.source).toEqual({ address: canonicalIp(local.address!), port: local.port });
    expect(header.destination).toEqual({ address: '127.0.0.1', port: sidecar.port });

    const ssl = tlv(header, PP2_TYPE_SSL);
    expect(ssl).toHaveLength(1);
    const parsedSsl = parseSslTlv(ssl[0]);
    expect(parsedSsl.client & (PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN)).toBe(PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN);
    expect(parsedSsl.verify).toBe(0);
    expect(parsedSsl.subTlvs.filter((t) => t.type === PP2_SUBTYPE_SSL_VERSION).map((t) => t.value.toString())).toEqual([
      version,
    ]);
    expect(version).toBe('TLSv1.3');
    expect(tlv(header, TLV_SPIFFE_ID).map((v) => v.toString('utf8'))).toEqual([CALLER_ID]);
    expect(appErrors).toEqual([]);
  });

  it('sends the header before any byte of the caller: a server-speaks-first app can greet', async () => {
    greeting = '220 ready\r\n';
    try {
      const before = arrivals.length;
      const client = await connectTls(sidecar.port, caller);
      const first = await new Promise<Buffer>((resolve) => client.once('data', resolve));
      expect(first.toString()).toBe('220 ready\r\n');
      expect(arrivals).toHaveLength(before + 1);
      expect(tlv(arrivals[before].header, TLV_SPIFFE_ID).map(String)).toEqual([CALLER_ID]);
      client.end();
      await readAll(client);
    } finally {
      greeting = undefined;
    }
  });

  it('gives every connection its own header, once, at the start (source ports differ)', async () => {
    const one = await call(sidecar.port, caller, Buffer.from('first'));
    const two = await call(sidecar.port, caller, Buffer.from('second'));
    expect(one.header.source!.port).toBe(one.localPort);
    expect(two.header.source!.port).toBe(two.localPort);
    expect(one.header.source!.port).not.toBe(two.header.source!.port);
  });

  it('names a federated caller by its own trust domain', async () => {
    const { header } = await call(sidecar.port, partner, Buffer.from('x'));
    expect(tlv(header, TLV_SPIFFE_ID).map(String)).toEqual([PARTNER_ID]);
  });

  it('carries a 2048-byte SPIFFE ID whole (a TLV length above 255)', async () => {
    const { header } = await call(sidecar.port, longCaller, Buffer.from('x'));
    const id = tlv(header, TLV_SPIFFE_ID);
    expect(id.map((v) => v.length)).toEqual([2048]);
    expect(id[0].toString('utf8')).toBe(LONG_ID);
  });

  it('reports TLS 1.2 in the version sub-TLV for a TLS 1.2 caller', async () => {
    const client = tlsConnect({
      host: '127.0.0.1',
      port: sidecar.port,
      cert: caller.chainPem,
      key: caller.keyPem,
      rejectUnauthorized: false,
      ...HALF_OPEN,
      maxVersion: 'TLSv1.2',
    });
    await new Promise((resolve, reject) => client.once('secureConnect', resolve).once('error', reject));
    expect(client.getProtocol()).toBe('TLSv1.2');
    const { header } = await call(sidecar.port, caller, Buffer.from('x'), undefined, client);
    const ssl = parseSslTlv(tlv(header, PP2_TYPE_SSL)[0]);
    expect(ssl.subTlvs.find((t) => t.type === PP2_SUBTYPE_SSL_VERSION)?.value.toString()).toBe('TLSv1.2');
  });

  it('on a resumed TLS session, says the certificate came with the session, not on this connection', async () => {
    // HAProxy's spec: PP2_CLIENT_CERT_CONN is "provided a certificate over the current connection";
    // PP2_CLIENT_CERT_SESS "at least once over the TLS session this connection belongs to".
    const first = await connectTls(sidecar.port, caller);
    const ticket = await new Promise<Buffer>((resolve) => first.once('session', resolve));
    first.end();
    await readAll(first);
    const resumed = tlsConnect({
      host: '127.0.0.1',
      port: sidecar.port,
      cert: caller.chainPem,
      key: caller.keyPem,
      rejectUnauthorized: false,
      ...HALF_OPEN,
      session: ticket,
    });
    await new Promise((resolve, reject) => resumed.once('secureConnect', resolve).once('error', reject));
    expect(resumed.isSessionReused()).toBe(true);
    const { header } = await call(sidecar.port, caller, Buffer.from('again'), undefined, resumed);
    expect(tlv(header, TLV_SPIFFE_ID).map(String)).toEqual([CALLER_ID]);
    const { client: bits } = parseSslTlv(tlv(header, PP2_TYPE_SSL)[0]);
    expect({
      ssl: (bits & PP2_CLIENT_SSL) !== 0,
      certOnThisConnection: (bits & PP2_CLIENT_CERT_CONN) !== 0,
      certOnTheSession: (bits & PP2_CLIENT_CERT_SESS) !== 0,
    }).toEqual({ ssl: true, certOnThisConnection: false, certOnTheSession: true });
  });

  it('sends TCP6 with both IPv6 addresses to a listener on [::1]', async () => {
    const v6 = await ppSidecar({ listen: '[::1]:0' });
    const client = await connectTls(v6.port, caller, '::1');
    const localPort = client.localPort;
    const { header } = await call(v6.port, caller, Buffer.from('six'), '::1', client);
    expect(header.verCmd).toBe(0x21);
    expect(header.family).toBe(0x21);
    expect(header.source).toEqual({ address: '::1', port: localPort });
    expect(header.destination).toEqual({ address: '::1', port: v6.port });
    expect(tlv(header, TLV_SPIFFE_ID).map(String)).toEqual([CALLER_ID]);
  });

  it('sends TCP4 for an IPv4 caller of a dual-stack listener on [::] (no ::ffff: mapped addresses)', async () => {
    const dual = await ppSidecar({ listen: '[::]:0' });
    const client = await connectTls(dual.port, caller, '127.0.0.1');
    const localPort = client.localPort;
    const { header } = await call(dual.port, caller, Buffer.from('four'), '127.0.0.1', client);
    expect(header.family).toBe(0x11);
    expect(header.source).toEqual({ address: '127.0.0.1', port: localPort });
    expect(header.destination).toEqual({ address: '127.0.0.1', port: dual.port });
  });

  it('sends the header to a unix socket app too', async () => {
    const unixApp = await startTcpApp(proxyAwareApp, { path: join(dir.path, 'pp.sock') });
    cleanups.push(() => unixApp.close());
    const viaUnix = await ppSidecar({}, unixApp.upstream);
    const client = await connectTls(viaUnix.port, caller);
    const localPort = client.localPort;
    const { header } = await call(viaUnix.port, caller, Buffer.from('unix'), undefined, client);
    expect(header.source).toEqual({ address: '127.0.0.1', port: localPort });
    expect(tlv(header, TLV_SPIFFE_ID).map(String)).toEqual([CALLER_ID]);
  });

  it('relays 16 MB after the header, intact both ways', async () => {
    const before = arrivals.length;
    const client = await connectTls(sidecar.port, caller);
    const echoed = readAll(client);
    const sent = await writeRandom(client, 16 * 1024 * 1024, true);
    expect(await echoed).toEqual(sent);
    await expect.poll(() => arrivals.length).toBe(before + 1);
    expect(await arrivals[before].payload).toEqual(sent);
  }, 30_000);

  it('without --proxy-protocol, the app receives the caller’s bytes and nothing else', async () => {
    let first: Buffer | undefined;
    const plainApp = await startTcpApp((socket) => {
      socket.once('data', (d: Buffer) => (first = d));
      socket.pipe(socket);
    });
    cleanups.push(() => plainApp.close());
    const plain = await startTestSidecar({
      protocol: 'tcp',
      upstream: plainApp.upstream,
      'mtls-cert-file': files.certFile,
      'mtls-key-file': files.keyFile,
      'mtls-ca-file': files.caFile,
      allow: [CALLER_ID],
    });
    cleanups.push(() => plain.close());
    const client = await connectTls(plain.port, caller);
    const back = readAll(client);
    client.end('hello');
    expect(await back).toEqual({ length: 5, sha256: sha256('hello') });
    expect(first?.toString()).toBe('hello');
  });
});
