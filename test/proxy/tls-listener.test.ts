// A TLS listener following rotation, on a real loopback TLS server: each new identity is served to new
// connections while open ones keep theirs, the bundle set before the current one is kept, a revocation
// reaches the hook, and after stop() nothing from the source reaches the server any more.
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CertificateAuthority } from '../../src/certs/dev-ca.js';
import { parseFileIdentity } from '../../src/identity/file-source.js';
import type { IdentitySource, IdentityStatus, X509Identity } from '../../src/identity/source.js';
import { serverTlsOptions } from '../../src/proxy/server-tls.js';
import { followRotation } from '../../src/proxy/tls-listener.js';
import { createDevCa, issueSvid } from '../helpers/pki.js';
import { normalizeSerial, servedSerial } from '../helpers/server-serial.js';
import { connectTls } from '../helpers/tcp-echo-app.js';

const ID = 'spiffe://example.org/ns/db/sa/postgres';

let ca: CertificateAuthority;
let caClient: { chainPem: string; keyPem: string };

beforeAll(async () => {
  ca = await createDevCa({ trustDomain: 'example.org' });
  caClient = await issueSvid(ca, { id: 'spiffe://example.org/ns/shop/sa/orders' });
});

async function newIdentity(): Promise<X509Identity> {
  const svid = await issueSvid(ca, { id: ID });
  return parseFileIdentity(
    { certFile: 'tls.crt', keyFile: 'tls.key', caFile: 'ca.crt', federatedBundles: [] },
    { certPem: svid.chainPem, keyPem: svid.keyPem, caPem: ca.certPem, federatedPems: [] },
  );
}

function serialOf(identity: X509Identity): string {
  return normalizeSerial(identity.svid.chain[0].node.serialNumber);
}

/** A source as a plain value: `rotate` and `revoke` tell the listeners at once, as notifyAll does. */
function testSource(first: X509Identity, { revocable = true } = {}) {
  let identity = first;
  const updates = new Set<(identity: X509Identity) => void>();
  const revocations = new Set<() => void>();
  const source: IdentitySource = {
    kind: 'workload_api',
    current: () => identity,
    status: (): IdentityStatus => ({ ready: true }),
    onUpdate: (listener) => {
      updates.add(listener);
      return () => updates.delete(listener);
    },
    ...(revocable
      ? {
          onRevoked: (listener: () => void) => {
            revocations.add(listener);
            return () => revocations.delete(listener);
          },
        }
      : {}),
    stats: () => ({ updated: 0, unchanged: 0, failed: 0 }),
    close: async () => {},
  };
  return {
    source,
    rotate(next: X509Identity) {
      identity = next;
      for (const listener of updates) listener(next);
    },
    revoke() {
      for (const listener of revocations) listener();
    },
    listeners: () => updates.size + revocations.size,
  };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

/** A TLS echo server with `identity`'s context, as the inbound listeners create theirs. */
async function tlsServer(identity: X509Identity): Promise<{ server: Server; port: number }> {
  const server = createServer(serverTlsOptions(identity), (socket: TLSSocket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

describe('followRotation', () => {
  it('serves each new identity to new connections while an open connection keeps working', async () => {
    const [a, b, c] = await Promise.all([newIdentity(), newIdentity(), newIdentity()]);
    const { server, port } = await tlsServer(a);
    const { source, rotate } = testSource(a);
    const rotation = followRotation(server, source, { initialBundles: a.bundles });
    const open = await connectTls(port, caClient);
    expect(normalizeSerial(open.getPeerCertificate().serialNumber)).toBe(serialOf(a));

    rotate(b);
    expect(await servedSerial(port, caClient)).toBe(serialOf(b));
    rotate(c);
    expect(await servedSerial(port, caClient)).toBe(serialOf(c));

    // The connection accepted under the first context still carries bytes.
    open.write('still here');
    const [echo] = (await once(open, 'data')) as [Buffer];
    expect(echo.toString()).toBe('still here');
    open.destroy();
    rotation.stop();
  });

  it('keeps the bundle set of the context before the current one', async () => {
    const [a, b, c] = await Promise.all([newIdentity(), newIdentity(), newIdentity()]);
    const { server } = await tlsServer(a);
    const { source, rotate } = testSource(a);
    const rotation = followRotation(server, source, { initialBundles: a.bundles });
    expect(rotation.previousBundles()).toBeUndefined();
    rotate(b);
    expect(rotation.previousBundles()).toBe(a.bundles);
    rotate(c);
    expect(rotation.previousBundles()).toBe(b.bundles);
    rotation.stop();
  });

  it('keeps what the caller said the first context was built from, even nothing', async () => {
    const [a, b] = await Promise.all([newIdentity(), newIdentity()]);
    const { server } = await tlsServer(a);
    const { source, rotate } = testSource(a);
    const rotation = followRotation(server, source, { initialBundles: undefined });
    rotate(b);
    expect(rotation.previousBundles()).toBeUndefined();
    rotation.stop();
  });

  it('passes each revocation to the hook, and still serves the identity it has', async () => {
    const a = await newIdentity();
    const { server, port } = await tlsServer(a);
    const { source, revoke } = testSource(a);
    let revoked = 0;
    const rotation = followRotation(server, source, { initialBundles: a.bundles, onRevoked: () => revoked++ });
    revoke();
    revoke();
    expect(revoked).toBe(2);
    // What to refuse is the caller's decision (peer-gate): the listener itself keeps its context.
    expect(await servedSerial(port, caClient)).toBe(serialOf(a));
    rotation.stop();
  });

  it('follows a source that cannot revoke (file mode), with or without a hook', async () => {
    const [a, b] = await Promise.all([newIdentity(), newIdentity()]);
    const { server, port } = await tlsServer(a);
    const { source, rotate } = testSource(a, { revocable: false });
    const withHook = followRotation(server, source, { initialBundles: a.bundles, onRevoked: () => {} });
    const without = followRotation(server, source, { initialBundles: a.bundles });
    rotate(b);
    expect(await servedSerial(port, caClient)).toBe(serialOf(b));
    withHook.stop();
    without.stop();
  });

  it('after stop(), later identities and revocations reach neither the server nor the hook', async () => {
    const [a, b] = await Promise.all([newIdentity(), newIdentity()]);
    const { server, port } = await tlsServer(a);
    const { source, rotate, revoke, listeners } = testSource(a);
    let revoked = 0;
    const rotation = followRotation(server, source, { initialBundles: a.bundles, onRevoked: () => revoked++ });
    expect(listeners()).toBe(2);
    rotation.stop();
    expect(listeners()).toBe(0);
    rotate(b);
    revoke();
    expect(revoked).toBe(0);
    expect(rotation.previousBundles()).toBeUndefined();
    expect(await servedSerial(port, caClient)).toBe(serialOf(a));
  });
});
