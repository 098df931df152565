// Our TLS intake, on a real loopback server, in place of tls.Server's own connection listener: a connection
// that fails or ends before its handshake completes is one 'tlsClientError' (as tls.Server emits it) and is
// closed, a handshake that completes is one 'secureConnection' with ALPN agreed, a TLS 1.3 resumption that
// never had a certificate is not "authorized", a new context reaches new connections only, and a server
// that already has other connection listeners is refused.
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect as connectTcp } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { TlsIntake } from '../../src/proxy/tls-intake.js';
import { createDevCa, issueSvid } from '../helpers/pki.js';
import { normalizeSerial } from '../helpers/server-serial.js';

let caPem: string;
let first: IssuedCertificate;
let second: IssuedCertificate;
const servers: Server[] = [];

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  caPem = ca.certPem;
  first = await issueSvid(ca, { id: 'spiffe://example.org/first' });
  second = await issueSvid(ca, { id: 'spiffe://example.org/second' });
});

afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

async function serve(handshakeTimeoutMs = 10_000): Promise<{ server: Server; intake: TlsIntake; port: number }> {
  const server = createServer({ ca: [] });
  servers.push(server);
  const intake = new TlsIntake(
    server,
    { cert: first.chainPem, key: first.keyPem, ca: caPem },
    { requestCert: true, handshakeTimeoutMs, ALPNProtocols: ['h2', 'http/1.1'] },
  );
  // Something written, so that the TLS 1.3 tickets go out before the close.
  server.on('secureConnection', (socket: TLSSocket) => socket.end('bye'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, intake, port: (server.address() as AddressInfo).port };
}

function serialOf(pem: string): string {
  return normalizeSerial(new X509Certificate(pem).serialNumber);
}

/** A client handshake, to the server's end: the serial of the certificate served, and the ALPN agreed. */
async function handshake(port: number): Promise<{ serial: string; alpn: string | false | null }> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    ca: caPem,
    cert: first.chainPem,
    key: first.keyPem,
    ALPNProtocols: ['http/1.1'],
    checkServerIdentity: () => undefined,
  });
  await once(socket, 'secureConnect');
  const result = { serial: normalizeSerial(socket.getPeerCertificate().serialNumber), alpn: socket.alpnProtocol };
  // The server ends an accepted connection: the client's Finished has reached it by then.
  socket.resume();
  await once(socket, 'close');
  return result;
}

describe('the TLS intake', () => {
  it("emits 'secureConnection' once per completed handshake, with the ALPN agreed", async () => {
    const { server, port } = await serve();
    const accepted: TLSSocket[] = [];
    server.on('secureConnection', (socket: TLSSocket) => accepted.push(socket));
    const errors: unknown[] = [];
    server.on('tlsClientError', (err) => errors.push(err));
    const secure = once(server, 'secureConnection');
    const seen = await handshake(port);
    await secure;
    expect(seen.alpn).toBe('http/1.1');
    // The next connection is accepted after this one: had the first been counted twice, it would show.
    const next = once(server, 'secureConnection');
    await handshake(port);
    await next;
    expect(accepted).toHaveLength(2);
    expect(accepted[0].authorized).toBe(true);
    expect(accepted[0].alpnProtocol).toBe('http/1.1');
    expect(errors).toEqual([]);
  });

  it("emits one 'tlsClientError' for a connection closed before the handshake, for bytes that are not TLS, and for a handshake that takes too long", async () => {
    const { server, port } = await serve();
    const closedEarly = once(server, 'tlsClientError');
    const quiet = connectTcp(port, '127.0.0.1');
    await once(quiet, 'connect');
    quiet.end();
    const [reset] = (await closedEarly) as [NodeJS.ErrnoException];
    expect(reset.code).toBe('ECONNRESET');
    expect(reset.message).toBe('socket hang up');

    const garbage = once(server, 'tlsClientError');
    const plain = connectTcp(port, '127.0.0.1', () => plain.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    plain.on('error', () => {});
    const plainClosed = once(plain, 'close');
    const [notTls] = (await garbage) as [NodeJS.ErrnoException];
    expect(notTls.code).toMatch(/^ERR_SSL_/);
    await plainClosed;

    // A client that says nothing is cut at the timeout: the test ends only if the server closes it.
    const slow = await serve(200);
    const timedOut = once(slow.server, 'tlsClientError');
    const silent = connectTcp(slow.port, '127.0.0.1');
    silent.on('error', () => {});
    const silentClosed = once(silent, 'close');
    const [timeout] = (await timedOut) as [NodeJS.ErrnoException];
    expect(timeout.code).toBe('ERR_TLS_HANDSHAKE_TIMEOUT');
    await silentClosed;
  });

  it('does not call a TLS 1.3 resumption of a session that had no certificate authorized', async () => {
    const { server, port } = await serve();
    const accepted: TLSSocket[] = [];
    server.on('secureConnection', (socket: TLSSocket) => accepted.push(socket));
    const connectOnce = async (session?: Buffer) => {
      const client = connect({ host: '127.0.0.1', port, ca: caPem, checkServerIdentity: () => undefined, session });
      let ticket: Buffer | undefined;
      client.on('session', (s: Buffer) => (ticket = s));
      client.resume();
      await once(client, 'close');
      return ticket;
    };
    const ticket = await connectOnce();
    expect(ticket, 'the server issued a ticket').toBeDefined();
    await connectOnce(ticket);
    expect(accepted).toHaveLength(2);
    expect(accepted[0].authorized).toBe(false);
    expect(accepted[1].isSessionReused()).toBe(true);
    expect(accepted[1].authorized).toBe(false);
    expect(accepted[1].authorizationError).toBe('UNABLE_TO_GET_ISSUER_CERT');
  });

  it('serves a new context to new connections only', async () => {
    const { intake, port } = await serve();
    expect((await handshake(port)).serial).toBe(serialOf(first.certPem));
    intake.setSecureContext({ cert: second.chainPem, key: second.keyPem, ca: caPem });
    expect((await handshake(port)).serial).toBe(serialOf(second.certPem));
  });

  it('refuses a server that has connection listeners other than tls.Server’s own', () => {
    const server = createServer({ ca: [] });
    server.on('connection', () => {});
    expect(
      () =>
        new TlsIntake(
          server,
          { cert: first.chainPem, key: first.keyPem },
          { requestCert: false, handshakeTimeoutMs: 1000 },
        ),
    ).toThrow(/expected one connection listener/);
  });
});
