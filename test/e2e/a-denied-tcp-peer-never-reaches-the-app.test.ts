// `--protocol tcp`: a peer the allow rules do not name, of a trust domain we do not trust, or without a
// certificate is cut off with no byte back, and the app never gets a connection for it; a client that never
// starts its handshake is cut at the handshake timeout.
import { once } from 'node:events';
import { connect } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import type { ClientCert } from '../helpers/client.js';
import type { TestSidecar } from '../helpers/sidecar.js';
import { connectTls, readAll, sha256, startTcpApp, type TcpApp } from '../helpers/tcp-echo-app.js';
import { attempt, DENIED_ID, PARTNER_ID, type TcpModeFixture, useTcpModeFixture } from '../helpers/tcp-mode-fixture.js';

const fixture = useTcpModeFixture();
let allowed: IssuedCertificate;
let denied: IssuedCertificate;
let partner: IssuedCertificate;
let foreign: IssuedCertificate;
let tcpSidecar: TcpModeFixture['tcpSidecar'];
let onCleanup: TcpModeFixture['onCleanup'];
beforeAll(() => {
  ({ allowed, denied, partner, foreign, tcpSidecar, onCleanup } = fixture());
});

describe('a denied tcp peer never reaches the app', () => {
  /** An app and a sidecar of their own: the app's count of accepted connections is theirs alone. */
  let guardedApp: TcpApp;
  let guarded: TestSidecar;
  beforeAll(async () => {
    guardedApp = await startTcpApp();
    onCleanup(() => guardedApp.close());
    guarded = await tcpSidecar(guardedApp.upstream);
  });

  async function expectNeverReached(cert: ClientCert | undefined, logged: Record<string, unknown>) {
    const acceptedBefore = guardedApp.accepted();
    const logsBefore = guarded.logs.length;
    const seen = await attempt(guarded.port, cert);
    expect(seen.stayedOpen).toBe(false);
    expect(seen.bytes).toBe(0);
    await expect.poll(() => guarded.logs.slice(logsBefore).find((l) => l.event === logged.event)).toMatchObject(logged);
    // Then an allowed peer goes through. A dial for the denied one would have begun before this one's
    // handshake did, so the app would have accepted it first: once the echo is back, one new connection.
    const control = await connectTls(guarded.port, allowed);
    const back = readAll(control);
    control.end('ok');
    expect(await back).toEqual({ length: 2, sha256: sha256('ok') });
    expect(guardedApp.accepted()).toBe(acceptedBefore + 1);
    return seen;
  }

  it('sanity: an allowed peer of the same sidecar is the app’s first connection', async () => {
    const client = await connectTls(guarded.port, allowed);
    const back = readAll(client);
    client.end('ok');
    expect(await back).toEqual({ length: 2, sha256: sha256('ok') });
    expect(guardedApp.accepted()).toBe(1);
  });

  it('a peer of our trust domain with a SPIFFE ID the rules do not allow', async () => {
    const seen = await expectNeverReached(denied, {
      event: 'authz',
      decision: 'deny',
      peer: DENIED_ID,
      protocol: 'tcp',
    });
    // The TLS handshake itself succeeded: it is the allow rule that closed the connection.
    expect(seen.handshook).toBe(true);
  });

  it('a peer of a federated trust domain that no rule names', async () => {
    await expectNeverReached(partner, { event: 'authz', decision: 'deny', peer: PARTNER_ID });
  });

  it('a peer from a trust domain we do not trust at all', async () => {
    await expectNeverReached(foreign, { event: 'peer_rejected' });
  });

  it('a peer without a certificate', async () => {
    await expectNeverReached(undefined, { event: 'peer_rejected', reason: 'ERR_NO_CLIENT_CERT' });
  });

  it('a client that never starts its handshake is cut at --handshake-timeout, and does not keep its slot', async () => {
    const strict = await tcpSidecar(guardedApp.upstream, { 'handshake-timeout': '1s', 'max-connections': '1' });
    const silent = connect(strict.port, '127.0.0.1');
    silent.on('error', () => {});
    // The test ends only if the sidecar closes it.
    await once(silent, 'close');
    await expect
      .poll(() => strict.logs.find((l) => l.event === 'tls_rejected'))
      .toMatchObject({ event: 'tls_rejected', reason: 'handshake_timeout' });
    // With one connection allowed, the next caller gets in only because the silent one is gone (its own
    // handshake has the whole second: no race on a busy machine).
    const control = await connectTls(strict.port, allowed);
    const back = readAll(control);
    control.end('ok');
    expect(await back).toEqual({ length: 2, sha256: sha256('ok') });
  });
});
