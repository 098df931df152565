// `--protocol tcp`: how a relay ends. An unreachable app disconnects the caller; --idle-timeout closes a
// relay on which nothing moves (and only that one); a drain lets an open relay work until --drain-timeout;
// in SPIRE mode a revoked identity ends open relays and refuses new peers before the app.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority, IssuedCertificate } from '../../src/certs/dev-ca.js';
import { issueSvid } from '../helpers/pki.js';
import { startSpireTestSidecar, startTestSidecar, type TestSidecar } from '../helpers/sidecar.js';
import { closed, closedPort, connectTls, peerGone, type TcpApp } from '../helpers/tcp-echo-app.js';
import { ALLOWED_ID, attempt, SERVER_ID, type TcpModeFixture, useTcpModeFixture } from '../helpers/tcp-mode-fixture.js';
import { TestWorkloadApi } from '../helpers/workload-api-server.js';

const fixture = useTcpModeFixture();
let dir: TcpModeFixture['dir'];
let ca: CertificateAuthority;
let files: TcpModeFixture['files'];
let allowed: IssuedCertificate;
let app: TcpApp;
let tcpSidecar: TcpModeFixture['tcpSidecar'];
let onCleanup: TcpModeFixture['onCleanup'];
beforeAll(() => {
  ({ dir, ca, files, allowed, app, tcpSidecar, onCleanup } = fixture());
});

describe('tcp relays end when the app is unreachable, idle, draining or our identity is revoked', () => {
  describe('an unreachable app: the caller is disconnected', () => {
    async function expectDisconnected(upstream: string) {
      const dead = await tcpSidecar(upstream);
      const client = await connectTls(dead.port, allowed);
      client.on('error', () => {});
      let bytes = 0;
      client.on('data', (d: Buffer) => (bytes += d.length));
      client.write('hello?');
      const started = performance.now();
      await peerGone(client);
      expect(performance.now() - started).toBeLessThan(5000);
      expect(bytes).toBe(0);
      await expect.poll(() => dead.logs.some((l) => l.event === 'upstream_error')).toBe(true);
    }

    it('a TCP port where nothing listens', async () => {
      await expectDisconnected(`tcp://127.0.0.1:${await closedPort()}`);
    });

    it('a unix socket path that does not exist', async () => {
      await expectDisconnected(`unix://${join(dir.path, 'nobody-home.sock')}`);
    });
  });

  describe('--idle-timeout 1s', () => {
    let idle: TestSidecar;
    beforeAll(async () => {
      idle = await tcpSidecar(app.upstream, { 'idle-timeout': '1s' });
    });

    it('closes a relay on which nothing moves, and the app connection with it', async () => {
      const client = await connectTls(idle.port, allowed);
      client.on('error', () => {});
      const first = new Promise<void>((resolve) => client.once('data', () => resolve()));
      client.write('x');
      await first;
      const appSocket = app.sockets.at(-1)!;
      const quietSince = performance.now();
      await peerGone(client);
      const quiet = performance.now() - quietSince;
      expect(quiet).toBeGreaterThan(800);
      expect(quiet).toBeLessThan(5000);
      await expect.poll(() => appSocket.closed).toBe(true);
    }, 15_000);

    it('keeps a relay open past the timeout while bytes keep moving', async () => {
      const client = await connectTls(idle.port, allowed);
      let echoed = 0;
      client.on('data', (d: Buffer) => (echoed += d.length));
      let ended = false;
      void peerGone(client).then(() => (ended = true));
      for (let i = 0; i < 10; i++) {
        client.write('.');
        await new Promise((r) => setTimeout(r, 300));
        expect(ended).toBe(false);
      }
      expect(echoed).toBe(10);
      client.end();
      await closed(client);
    }, 15_000);
  });

  it('a drain (SIGTERM) refuses new connections, lets an open relay work, and cuts it at --drain-timeout', async () => {
    const draining = await startTestSidecar({
      protocol: 'tcp',
      upstream: app.upstream,
      'mtls-cert-file': files.certFile,
      'mtls-key-file': files.keyFile,
      'mtls-ca-file': files.caFile,
      allow: [ALLOWED_ID],
      'drain-timeout': '1s',
    });
    const client = await connectTls(draining.port, allowed);
    client.on('error', () => {});
    const hello = new Promise<void>((resolve) => client.once('data', () => resolve()));
    client.write('a');
    await hello;
    const started = performance.now();
    const stopped = draining.stop();
    const during = new Promise<Buffer>((resolve) => client.once('data', resolve));
    client.write('b');
    expect((await during).toString()).toBe('b');
    await expect(connectTls(draining.port, allowed)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await peerGone(client);
    await stopped;
    const took = performance.now() - started;
    expect(took).toBeGreaterThan(800);
    expect(took).toBeLessThan(5000);
  }, 15_000);

  it('in SPIRE mode, a revoked identity ends open relays and refuses new peers before the app', async () => {
    const api = await TestWorkloadApi.start(join(dir.path, 'agent.sock'));
    onCleanup(() => api.close());
    api.setX509({
      svids: [{ spiffeId: SERVER_ID, svid: await issueSvid(ca, { id: SERVER_ID }), bundlePem: ca.certPem }],
    });
    const spire = await startSpireTestSidecar({
      protocol: 'tcp',
      upstream: app.upstream,
      'workload-api-socket': api.address,
      allow: [ALLOWED_ID],
    });
    onCleanup(() => spire.close());
    const open = await connectTls(spire.port, allowed);
    open.on('error', () => {});
    const hello = new Promise<void>((resolve) => open.once('data', () => resolve()));
    open.write('a');
    await hello;
    api.unregister();
    await expect.poll(() => spire.identity.status().reason).toBe('identity_revoked');
    await peerGone(open);
    const acceptedBefore = app.accepted();
    const seen = await attempt(spire.port, allowed);
    expect(seen.stayedOpen).toBe(false);
    expect(seen.bytes).toBe(0);
    expect(app.accepted()).toBe(acceptedBefore);
    expect(spire.logs.some((l) => l.event === 'connection_refused' && l.reason === 'identity_revoked')).toBe(true);
  }, 20_000);
});
