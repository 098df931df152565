// Found by review: a reason phrase that Node parses but cannot write again crashed the process (from the
// remote, or from the app; it is no longer copied); a token file with a line break crashed it; a pooled egress connection outlived
// a change of our identity; an absolute-form target was forwarded as is.
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer, type Server } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { requestVia } from '../helpers/client.js';
import { type EchoApp, startEchoApp } from '../helpers/echo-app.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { runCli } from '../helpers/process.js';
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';

const A = 'spiffe://example.org/a';
const B = 'spiffe://example.org/b';
const BAD_STATUS = 'HTTP/1.1 200 O\x01K\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok';

let dir: { path: string; remove: () => Promise<void> };
let ca: CertificateAuthority;
let appB: EchoApp;
let b: TestSidecar;
const closers: (() => Promise<unknown> | void)[] = [];

async function files(name: string, svid: IssuedCertificate, bundle = ca.certPem) {
  const d = join(dir.path, name);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, 'tls.crt'), svid.chainPem);
  await writeFile(join(d, 'tls.key'), svid.keyPem);
  await writeFile(join(d, 'ca.crt'), bundle);
  return {
    'mtls-cert-file': join(d, 'tls.crt'),
    'mtls-key-file': join(d, 'tls.key'),
    'mtls-ca-file': join(d, 'ca.crt'),
  };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((r) => server.close(r)));
  return (server.address() as { port: number }).port;
}

beforeAll(async () => {
  dir = await tempDir();
  ca = await createDevCa({ trustDomain: 'example.org' });
  appB = await startEchoApp();
  b = await startTestSidecar({ upstream: appB.url, ...(await files('b', await issueSvid(ca, { id: B }))), allow: [A] });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await b.close();
  await appB.close();
  await dir.remove();
});

async function outboundSidecar(name: string, route: string) {
  const s = await startTestSidecar({ ...(await files(name, await issueSvid(ca, { id: A }))), outbound: [route] });
  closers.push(() => s.close());
  return s;
}

const get = async (port: number, path = '/x') => {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
};

describe('hostile remotes, apps and tokens cannot crash or misdirect the sidecar', () => {
  it('a verified remote answering an unwritable reason phrase: relayed without it, and the sidecar lives', async () => {
    const bSvid = await issueSvid(ca, { id: B });
    const remote = createTlsServer({ cert: bSvid.chainPem, key: bSvid.keyPem }, (socket) => {
      socket.once('data', () => socket.end(BAD_STATUS));
    });
    const port = await listen(remote);
    const a = await outboundSidecar('a1', `127.0.0.1:0=https://127.0.0.1:${port},id=${B}`);
    for (let i = 0; i < 2; i++) {
      const res = await get(a.outboundAddresses()[0].port);
      expect(res).toEqual({ status: 200, body: 'ok' });
    }
  });

  it('an app answering an unwritable reason phrase: relayed without it, and the sidecar lives', async () => {
    const app = createTcpServer((socket) => socket.once('data', () => socket.end(BAD_STATUS)));
    const port = await listen(app);
    const inbound = await startTestSidecar({
      upstream: `http://127.0.0.1:${port}`,
      ...(await files('b2', await issueSvid(ca, { id: B }))),
      allow: [A],
    });
    closers.push(() => inbound.close());
    const caller = await issueSvid(ca, { id: A });
    for (let i = 0; i < 2; i++) {
      const res = await requestVia(inbound.port, caller);
      expect({ status: res.status, body: res.body }).toEqual({ status: 200, body: 'ok' });
    }
  });

  it('a token file with a line break is never sent (503), and the sidecar lives', async () => {
    const tokenFile = join(dir.path, 'token');
    await writeFile(tokenFile, 'aaa.bbb.ccc\r\nX-Evil: 1\n');
    const s = await startTestSidecar({
      outbound: [`127.0.0.1:0=http://127.0.0.1:${b.port},auth=jwt,audience=b,token-file=${tokenFile}`],
    });
    closers.push(() => s.close());
    const res = await get(s.outboundAddresses()[0].port);
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body).reason).toBe('no_token');
  });

  it('after our identity changes, no pooled connection made under the old one is reused', async () => {
    const a = await outboundSidecar('a3', `127.0.0.1:0=https://127.0.0.1:${b.port},id=${B}`);
    const port = a.outboundAddresses()[0].port;
    expect((await get(port)).status).toBe(200);
    // A moves to another trust domain root that B does not trust: a new connection must fail.
    const other = await createDevCa({ trustDomain: 'example.org' });
    await files('a3', await issueSvid(other, { id: A }), other.certPem);
    expect((await a.identity!.reload('test')).outcome).toBe('updated');
    expect((await get(port)).status).toBe(502);
  });

  it('an absolute-form target is reduced to its path', async () => {
    const a = await outboundSidecar('a4', `127.0.0.1:0=https://127.0.0.1:${b.port},id=${B}`);
    const { connect } = await import('node:net');
    const socket = connect(a.outboundAddresses()[0].port, '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => {
      received += d.toString();
    });
    socket.write('GET http://evil.example/steal?x=1 HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n');
    await expect.poll(() => received).toContain('HTTP/1.1 200');
    socket.destroy();
    const seen = JSON.parse(received.slice(received.indexOf('{')));
    expect(seen.url).toBe('/steal?x=1');
    expect(seen.headers.host).toBe(`127.0.0.1:${b.port}`);
  });

  it.each([
    ['127.0.0.1:0=http://127.0.0.1:9,id=spiffe://example.org/b', 'needs an https:// remote'],
    ['127.0.0.1:0=https://u:p@127.0.0.1:9,id=spiffe://example.org/b', 'origin'],
    ['localhost:0=https://127.0.0.1:9,id=spiffe://example.org/b', 'not the name localhost'],
    ['0.0.0.0:0=https://127.0.0.1:9,id=spiffe://example.org/b', 'is not loopback'],
    ['127.0.0.1:0=http://localhost:9,auth=jwt,audience=b,token-file=/t', 'only over https'],
  ])('refuses --outbound %s', async (route, fragment) => {
    const result = await runCli(['--outbound', route]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(fragment);
  });
});
