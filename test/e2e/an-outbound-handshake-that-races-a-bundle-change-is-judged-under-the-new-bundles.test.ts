// Outbound routes verify the remote under the trust of the moment its handshake completes (verified-connect.ts):
// a handshake that began before the bundles changed, and completes after, is judged under the new bundles, as
// every request after the change is (README, Outbound). Here the bundle of example.org changes to another CA
// while a TCP hop holds the handshake; the remote's SVID chains only to the old CA, so neither an HTTP nor a
// TCP route may send it a byte. (The h2 route redials under the new trust: h2-outbound.ts.)
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CertificateAuthority } from '../../src/certs/dev-ca.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { startSpireTestSidecar, type SpireTestSidecar } from '../helpers/sidecar.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';

const OURS = 'spiffe://example.org/ns/shop/sa/frontend';
const ORDERS = 'spiffe://example.org/ns/shop/sa/orders';

let dir: { path: string; remove: () => Promise<void> };
let oldCa: CertificateAuthority;
let newCa: CertificateAuthority;
let api: TestWorkloadApi;
let remote: TlsServer;
/** Bytes the remote decrypted, from any connection. */
let reached = 0;
/** A TCP hop to the remote that holds each connection until released: a handshake that takes its time. */
let hop: Server;
const held: (() => void)[] = [];
let sidecar: SpireTestSidecar;

beforeAll(async () => {
  dir = await tempDir();
  [oldCa, newCa] = await Promise.all([
    createDevCa({ trustDomain: 'example.org' }),
    createDevCa({ trustDomain: 'example.org' }),
  ]);
  const orders = await issueSvid(oldCa, { id: ORDERS });
  remote = createTlsServer(
    { cert: orders.chainPem, key: orders.keyPem, requestCert: true, rejectUnauthorized: false },
    (socket) => {
      socket.on('error', () => {});
      socket.on('data', (d: Buffer) => {
        reached += d.length;
        socket.end('HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nreached');
      });
    },
  );
  await new Promise<void>((resolve) => remote.listen(0, '127.0.0.1', resolve));
  const remotePort = (remote.address() as AddressInfo).port;
  hop = createNetServer({ pauseOnConnect: true }, (caller) => {
    caller.on('error', () => {});
    held.push(() => {
      const up = netConnect(remotePort, '127.0.0.1', () => {
        caller.pipe(up).pipe(caller);
        caller.resume();
      });
      up.on('error', () => caller.destroy());
    });
  });
  await new Promise<void>((resolve) => hop.listen(0, '127.0.0.1', resolve));
  const hopPort = (hop.address() as AddressInfo).port;
  api = await TestWorkloadApi.start(join(dir.path, 'agent.sock'));
  api.setX509({ svids: [{ spiffeId: OURS, svid: await issueSvid(oldCa, { id: OURS }), bundlePem: oldCa.certPem }] });
  sidecar = await startSpireTestSidecar({
    'workload-api-socket': api.address,
    outbound: [
      `127.0.0.1:0=https://127.0.0.1:${hopPort},id=${ORDERS}`,
      `127.0.0.1:0=tls://127.0.0.1:${hopPort},id=${ORDERS}`,
    ],
  });
});
afterAll(async () => {
  await sidecar?.close();
  await api?.close();
  hop?.close();
  remote?.close();
  await dir?.remove();
});

it('a remote whose CA left the bundles while its handshake was under way gets no byte, over HTTP or TCP', async () => {
  // One request on the HTTP route, one connection on the TCP route: both handshakes wait in the hop.
  const [httpRoute, tcpRoute] = sidecar.outboundAddresses();
  const http = netConnect(httpRoute.port, '127.0.0.1');
  const tcp = netConnect(tcpRoute.port, '127.0.0.1');
  let httpAnswer = '';
  http.on('error', () => {}).on('data', (d: Buffer) => (httpAnswer += d.toString()));
  let tcpAnswer = '';
  // The TCP route's verdict: closed with nothing (refused), or the remote's answer relayed.
  const tcpVerdict = new Promise<void>((resolve) =>
    tcp
      .on('error', () => {})
      .on('data', (d: Buffer) => {
        tcpAnswer += d.toString();
        resolve();
      })
      .once('close', () => resolve()),
  );
  http.write('GET /orders HTTP/1.1\r\nhost: orders\r\nconnection: close\r\n\r\n');
  tcp.write('GET /orders HTTP/1.1\r\nhost: orders\r\nconnection: close\r\n\r\n');
  await expect.poll(() => held.length).toBe(2);
  // The agent rotates to another CA: our SVID and example.org's bundle both change.
  api.setX509({ svids: [{ spiffeId: OURS, svid: await issueSvid(newCa, { id: OURS }), bundlePem: newCa.certPem }] });
  // The first identity was logged as an update too: this is the second.
  await expect.poll(() => sidecar.logs.filter((l) => l.event === 'identity_updated').length).toBe(2);
  for (const release of held.splice(0)) release();
  await expect.poll(() => httpAnswer).toMatch(/^HTTP\/1\.1 \d{3} /);
  expect(httpAnswer).toMatch(/^HTTP\/1\.1 502 /);
  await tcpVerdict;
  expect(tcpAnswer).toBe('');
  expect(reached).toBe(0);
});
