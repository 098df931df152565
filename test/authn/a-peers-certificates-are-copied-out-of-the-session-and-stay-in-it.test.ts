// The certificates a peer presented, read from real TLS sessions on loopback (our intake as the server, a
// client whose SVID comes from an intermediate CA): the leaf from the session's encoding, in a full and in a
// resumed handshake; the chain, leaf first, with the intermediate the client sent; and a second read sees
// exactly what the first did; a chain's length counts the root Node completes it with. Node's
// getPeerX509Certificate() takes the intermediates out of a server session (and leaks them), so no source
// file may call it.
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readdir, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticateTlsPeer } from '../../src/authn/mtls.js';
import { peerChainDer, peerLeafDer } from '../../src/authn/peer-certificates.js';
import {
  type CertificateAuthority,
  type IssuedCertificate,
  type Issuer,
  issueIntermediateCa,
} from '../../src/certs/dev-ca.js';
import { type X509BundleSet, x509BundleSetFromPem } from '../../src/spiffe/bundle.js';
import { TlsIntake } from '../../src/proxy/tls-intake.js';
import { createDevCa, issueSvid } from '../helpers/pki.js';

interface Seen {
  authorized: boolean;
  authorizationError: unknown;
  resumed: boolean;
  leaf: Buffer | undefined;
  chain: Buffer[];
  chainAgain: Buffer[];
  leafAgain: Buffer | undefined;
  authn: string;
}

function certificatesOf(chainPem: string): Buffer[] {
  return (chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (pem) => new X509Certificate(pem).raw,
  );
}

let server: Server;
let port: number;
let caPem: string;
let client: IssuedCertificate;
let intermediateDer: Buffer;
let stranger: IssuedCertificate;
let bundles: X509BundleSet;
let ca: CertificateAuthority;
const seen: Seen[] = [];

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: 'example.org' });
  caPem = ca.certPem;
  bundles = x509BundleSetFromPem({ 'example.org': ca.certPem });
  const intermediate = await issueIntermediateCa(ca);
  intermediateDer = new X509Certificate(intermediate.certPem).raw;
  client = await issueSvid(intermediate, { id: 'spiffe://example.org/ns/shop/sa/orders' });
  const served = await issueSvid(ca, { id: 'spiffe://example.org/ns/db/sa/postgres' });
  stranger = await issueSvid(await createDevCa({ trustDomain: 'elsewhere.org' }), { id: 'spiffe://elsewhere.org/x' });
  server = createServer({ ca: [] });
  new TlsIntake(
    server,
    { cert: served.chainPem, key: served.keyPem, ca: ca.certPem },
    { requestCert: true, handshakeTimeoutMs: 10_000 },
  );
  server.on('secureConnection', (socket: TLSSocket) => {
    seen.push({
      authorized: socket.authorized,
      authorizationError: socket.authorizationError,
      resumed: socket.isSessionReused(),
      leaf: peerLeafDer(socket),
      chain: peerChainDer(socket, 8),
      chainAgain: peerChainDer(socket, 8),
      leafAgain: peerLeafDer(socket),
      authn: ((r) => (r.ok ? String(r.identity.id) : r.rejection.reason))(authenticateTlsPeer(socket, bundles)),
    });
    socket.end('seen');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

afterAll(() => server?.close());

/** One connection; resolves with what the server saw and the session the client was given. */
async function handshake(
  options: { cert?: string; key?: string; session?: Buffer } = {},
): Promise<{ seen: Seen; session: Buffer | undefined }> {
  const before = seen.length;
  const socket = connect({ host: '127.0.0.1', port, ca: caPem, checkServerIdentity: () => undefined, ...options });
  let session: Buffer | undefined;
  socket.on('session', (s: Buffer) => (session = s));
  socket.resume();
  await once(socket, 'close');
  expect(seen.length, 'the server saw the connection').toBe(before + 1);
  return { seen: seen[before], session };
}

describe("a peer's certificates", () => {
  it('come out of a full handshake: the leaf, then the intermediate the peer sent, the same on a second read', async () => {
    const sent = certificatesOf(client.chainPem);
    const { seen } = await handshake({ cert: client.chainPem, key: client.keyPem });
    expect(seen.authorized).toBe(true);
    expect(seen.resumed).toBe(false);
    expect(seen.leaf?.equals(sent[0])).toBe(true);
    expect(seen.chain.length).toBeGreaterThanOrEqual(2);
    expect(seen.chain[0].equals(sent[0])).toBe(true);
    expect(seen.chain[1].equals(intermediateDer)).toBe(true);
    expect(seen.chain.at(-1)?.equals(new X509Certificate(caPem).raw), 'completed up to the root').toBe(true);
    expect(seen.authn).toBe('spiffe://example.org/ns/shop/sa/orders');
    expect(seen.chainAgain.map((c) => c.toString('hex'))).toEqual(seen.chain.map((c) => c.toString('hex')));
    expect(seen.leafAgain?.equals(sent[0])).toBe(true);
  });

  it('give the leaf of a resumed session too', async () => {
    const first = await handshake({ cert: client.chainPem, key: client.keyPem });
    expect(first.session, 'the server issued a ticket').toBeDefined();
    const { seen } = await handshake({ cert: client.chainPem, key: client.keyPem, session: first.session });
    expect(seen.resumed).toBe(true);
    expect(seen.leaf?.equals(certificatesOf(client.chainPem)[0])).toBe(true);
  });

  it("are nothing for a peer that sent none, and OpenSSL's verdict is kept for one it cannot trust", async () => {
    const none = await handshake();
    expect(none.seen.leaf).toBeUndefined();
    expect(none.seen.chain).toEqual([]);
    const untrusted = await handshake({ cert: stranger.chainPem, key: stranger.keyPem });
    expect(untrusted.seen.authorized).toBe(false);
    expect(untrusted.seen.authorizationError).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(untrusted.seen.leaf?.equals(certificatesOf(stranger.chainPem)[0])).toBe(true);
  });

  it('are at most 8 with the root: a leaf under 6 intermediates is admitted, under 7 it is refused', async () => {
    let issuer: Issuer = ca;
    const under: Record<number, IssuedCertificate> = {};
    for (let depth = 1; depth <= 7; depth++) {
      issuer = await issueIntermediateCa(issuer);
      if (depth >= 6) under[depth] = await issueSvid(issuer, { id: `spiffe://example.org/depth/${depth}` });
    }
    const six = await handshake({ cert: under[6].chainPem, key: under[6].keyPem });
    expect(six.seen.authorized).toBe(true);
    expect(six.seen.authn).toBe('spiffe://example.org/depth/6');
    const seven = await handshake({ cert: under[7].chainPem, key: under[7].keyPem });
    expect(seven.seen.authorized).toBe(true);
    expect(seven.seen.authn).toBe('ERR_PEER_CHAIN_TOO_LARGE');
  });

  it("are never read with getPeerX509Certificate() in the sidecar's source", async () => {
    const src = join(import.meta.dirname, '../../src');
    const files = (await readdir(src, { recursive: true })).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(50);
    const callers: string[] = [];
    for (const file of files) {
      if (/\.getPeerX509Certificate\s*\(/.test(await readFile(join(src, file), 'utf8'))) callers.push(file);
    }
    expect(callers).toEqual([]);
  });
});
