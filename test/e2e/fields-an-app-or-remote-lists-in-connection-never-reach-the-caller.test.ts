// RFC 9110 §7.6.1: a proxy removes the fields a message's Connection header lists. Requests had it; this is
// the response side, for HTTP/1.1 and HTTP/2 callers of the inbound listener and for the outbound listener's
// callers (both HTTP/1.1 engines). A listed Content-Length stays: it frames the body we relay. A field named
// `Close` never travels (RFC 9110 §16.3.2.2 reserves the name).
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { requestVia } from '../helpers/client.js';
import { h2request, h2session } from '../helpers/http2-fixture.js';
import { createDevCa, issueSvid, mtlsFileOptions, tempDir, writeServingFiles } from '../helpers/pki.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const A = 'spiffe://example.org/a';
const B = 'spiffe://example.org/b';
const ANSWER =
  'HTTP/1.1 200 OK\r\n' +
  'Connection: keep-alive, X-Hop, Content-Length\r\n' +
  'X-Hop: secret\r\n' +
  'Connection: x-also\r\n' +
  'X-Also: secret too\r\n' +
  'Close: a name RFC 9110 reserves\r\n' +
  'X-Keep: yes\r\n' +
  'Content-Length: 2\r\n' +
  '\r\n' +
  'ok';

/** Answers every request head it reads with ANSWER (GETs only: no body to skip). */
function answerEveryHead(socket: Socket): void {
  let pending = '';
  socket.on('data', (data: Buffer) => {
    pending += data.toString('latin1');
    let end: number;
    while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
      pending = pending.slice(end + 4);
      socket.write(ANSWER);
    }
  });
  socket.on('error', () => {});
}

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let caller: IssuedCertificate;
const closers: (() => Promise<unknown> | void)[] = [];

/** File-mode options serving `svid` (and the CA's bundle) from a directory of its own. */
async function files(name: string, svid: IssuedCertificate) {
  const d = join(dir.path, name);
  await mkdir(d, { recursive: true });
  return mtlsFileOptions(await writeServingFiles(d, svid, ca.certPem));
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((r) => server.close(r)));
  return (server.address() as { port: number }).port;
}

let inbound: TestSidecar;
let nodeEngine: TestSidecar;
beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  caller = await issueSvid(ca, { id: A });
  const appPort = await listen(createTcpServer(answerEveryHead));
  const svidFiles = await files('b', await issueSvid(ca, { id: B }));
  inbound = await startTestSidecar({ upstream: `http://127.0.0.1:${appPort}`, ...svidFiles, allow: [A] });
  closers.push(() => inbound.close());
  nodeEngine = await startTestSidecar({
    upstream: `http://127.0.0.1:${appPort}`,
    ...svidFiles,
    allow: [A],
    'http-engine': 'node',
  });
  closers.push(() => nodeEngine.close());
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await dir.remove();
});

describe('fields an app or remote lists in Connection never reach the caller', () => {
  it.each([
    ['raw', () => inbound.port],
    ['node', () => nodeEngine.port],
  ])('an HTTP/1.1 caller gets the answer without them, twice on one app connection (%s engine)', async (_e, port) => {
    for (let i = 0; i < 2; i++) {
      const res = await requestVia(port(), caller);
      expect(res.status).toBe(200);
      expect(res.body).toBe('ok');
      expect(res.headers['x-keep']).toBe('yes');
      expect(res.headers['content-length']).toBe('2');
      expect(res.headers['x-hop']).toBeUndefined();
      expect(res.headers['x-also']).toBeUndefined();
      expect(res.headers.close).toBeUndefined();
    }
  });

  it('an HTTP/2 caller gets the answer without them', async () => {
    const session = await h2session(inbound.port, caller);
    const res = await h2request(session, { ':path': '/' });
    session.close();
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('ok');
    expect(res.headers['x-keep']).toBe('yes');
    expect(res.headers['x-hop']).toBeUndefined();
    expect(res.headers['x-also']).toBeUndefined();
    expect(res.headers.close).toBeUndefined();
  });

  it("the outbound listener's caller gets a verified remote's answer without them", async () => {
    const remoteSvid = await issueSvid(ca, { id: B });
    const remotePort = await listen(
      createTlsServer({ cert: remoteSvid.chainPem, key: remoteSvid.keyPem }, answerEveryHead),
    );
    const out = await startTestSidecar({
      ...(await files('a', caller)),
      outbound: [`127.0.0.1:0=https://127.0.0.1:${remotePort},id=${B}`],
    });
    closers.push(() => out.close());
    const res = await fetch(`http://127.0.0.1:${out.outboundAddresses()[0].port}/x`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok');
    expect(res.headers.get('x-keep')).toBe('yes');
    expect(res.headers.get('x-hop')).toBeNull();
    expect(res.headers.get('x-also')).toBeNull();
    expect(res.headers.get('close')).toBeNull();
  });
});
