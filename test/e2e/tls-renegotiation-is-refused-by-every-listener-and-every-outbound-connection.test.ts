// TLS 1.2 renegotiation is refused, as Go's crypto/tls and BoringSSL (ghostunnel, Envoy) refuse it: a caller
// must not make the sidecar redo handshakes at will on one connection, and a certificate presented in a
// renegotiation would never be judged (identity is read once, at the gate). Both listeners (HTTP, TCP) refuse a
// caller's renegotiation and close; an outbound connection refuses a remote's, and the request does not go on.
import { connect as tlsConnect, createServer as createTlsServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { createDevCa, issueSvid, mtlsFileOptions, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { startTcpApp, type TcpApp } from '../helpers/tcp-echo-app.js';

const A = 'spiffe://example.org/a';
const B = 'spiffe://example.org/b';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let caller: IssuedCertificate;
let files: Record<string, string>;
let httpApp: EchoApp;
let tcpApp: TcpApp;
const cleanups: (() => Promise<unknown> | void)[] = [];

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  caller = await issueSvid(ca, { id: A });
  files = mtlsFileOptions(await writeServingFiles(dir.path, await issueSvid(ca, { id: B }), ca.certPem));
  httpApp = await startEchoApp();
  tcpApp = await startTcpApp();
});
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await httpApp.close();
  await tcpApp.close();
  await dir.remove();
});

async function sidecar(options: Record<string, unknown>): Promise<TestSidecar> {
  const s = await startTestSidecar({ ...files, ...(options.upstream ? { allow: [A] } : {}), ...options });
  cleanups.push(() => s.close());
  return s;
}

/** A TLS 1.2 connection with the caller's SVID (TLS 1.3 has no renegotiation to ask for). */
async function tls12(port: number): Promise<TLSSocket> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    cert: caller.chainPem,
    key: caller.keyPem,
    rejectUnauthorized: false,
    maxVersion: 'TLSv1.2',
  });
  await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  return socket;
}

/** Asks to renegotiate: resolves with the error that refused it, or undefined if it went through. */
function renegotiate(socket: TLSSocket): Promise<Error | undefined> {
  return new Promise((resolve) => {
    socket.once('error', resolve);
    socket.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ?? undefined));
  });
}

const closed = (socket: TLSSocket) =>
  socket.closed ? Promise.resolve() : new Promise<void>((resolve) => socket.once('close', () => resolve()));

describe('tls renegotiation is refused by every listener and every outbound connection', () => {
  it.each([
    ['the HTTP listener', () => sidecar({ upstream: httpApp.url })],
    ['the TCP listener (--protocol tcp)', () => sidecar({ protocol: 'tcp', upstream: tcpApp.upstream })],
  ])("%s refuses a caller's renegotiation", async (_name, start) => {
    const s = await start();
    const socket = await tls12(s.port);
    const refused = await renegotiate(socket);
    socket.destroy();
    expect((refused as NodeJS.ErrnoException | undefined)?.code).toBe('ERR_SSL_NO_RENEGOTIATION');
  });

  it('the HTTP listener still serves TLS 1.2 callers that do not renegotiate', async () => {
    const s = await sidecar({ upstream: httpApp.url });
    const socket = await tls12(s.port);
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.write('GET /tls12 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    await closed(socket);
    expect(received.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
  });

  it("an outbound connection refuses a remote's renegotiation: the remote is told no, the request goes no further", async () => {
    const remoteSvid = await issueSvid(ca, { id: B });
    const asked: (Error | undefined)[] = [];
    const remote: Server = createTlsServer(
      { cert: remoteSvid.chainPem, key: remoteSvid.keyPem, maxVersion: 'TLSv1.2' },
      (socket) => {
        // Refused, the renegotiation ends in the socket's error (or in the callback's, as Node reports it).
        socket.on('error', (err) => asked.push(err));
        socket.once('data', () =>
          socket.renegotiate({}, (err) => {
            asked.push(err ?? undefined);
            if (err) socket.destroy();
            else socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
          }),
        );
      },
    );
    await new Promise<void>((resolve) => remote.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => remote.close(resolve)));
    const port = (remote.address() as { port: number }).port;
    const s = await sidecar({ outbound: [`127.0.0.1:0=https://127.0.0.1:${port},id=${B}`] });
    const res = await fetch(`http://127.0.0.1:${s.outboundAddresses()[0].port}/x`);
    expect(await res.json()).toMatchObject({ reason: 'remote_unreachable' });
    expect(res.status).toBe(502);
    expect(asked).toHaveLength(1);
    expect(asked[0]).toBeInstanceOf(Error);
  });
});
