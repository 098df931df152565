// Every rejection path of peer authentication, over real TLS: the connection fails, the log names the
// reason, and the app sees nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type IssuedCertificate, type Issuer, issueIntermediateCa } from '../../src/certs/dev-ca.js';
import { x509 } from '../../src/spiffe/x509-library.js';
import { expectRejected, requestVia } from '../helpers/client.js';
import { createDevCa, HOUR, issueSvid, KU, svidWith } from '../helpers/pki.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

let s: Scenario;
beforeAll(async () => {
  s = await startScenario();
});
afterAll(() => s.close());

/** The last rejection the sidecar logged since `from`: in the TLS handshake (OpenSSL) or by our SPIFFE verifier. */
function lastRejection(from: number) {
  const line = s.sidecar.logs
    .slice(from)
    .filter((l) => l.event === 'tls_rejected' || l.event === 'peer_rejected')
    .at(-1);
  return line && { event: line.event, reason: line.reason };
}

async function expectRefused(cert: IssuedCertificate | undefined, event: string, reason: string) {
  const seenBefore = s.app.seen.length;
  const logsBefore = s.sidecar.logs.length;
  await expectRejected(s.sidecar.port, cert, { path: '/secret' });
  // Other lines may come first (an earlier request's access line is written when its exchange is over).
  await expect.poll(() => lastRejection(logsBefore)).toEqual({ event, reason });
  expect(s.app.seen.length).toBe(seenBefore);
}

describe('invalid client certificates are rejected before the app', () => {
  it('sanity: the same sidecar admits a valid caller', async () => {
    expect((await requestVia(s.sidecar.port, s.allowed)).status).toBe(200);
  });

  it('no client certificate', async () => {
    await expectRefused(undefined, 'peer_rejected', 'ERR_NO_CLIENT_CERT');
  });

  it('an expired certificate', async () => {
    const expired = await svidWith(s.caA, ALLOWED_ID, {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    await expectRefused(expired, 'peer_rejected', 'CERT_HAS_EXPIRED');
  });

  it('a certificate from an unknown CA', async () => {
    const rogue = await createDevCa({ trustDomain: 'example.org' });
    await expectRefused(await issueSvid(rogue, { id: ALLOWED_ID }), 'peer_rejected', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('a leaf with two URI SANs (the allowed ID plus another)', async () => {
    const two = await svidWith(s.caA, ALLOWED_ID, { uris: [ALLOWED_ID, 'spiffe://example.org/other'] });
    await expectRefused(two, 'peer_rejected', 'ERR_SVID_MULTIPLE_URI_SANS');
  });

  it('a CA certificate used as a leaf', async () => {
    const caLeaf = await svidWith(s.caA, ALLOWED_ID, { isCA: true, keyUsage: KU.digitalSignature | KU.keyCertSign });
    await expectRefused(caLeaf, 'peer_rejected', 'ERR_SVID_LEAF_IS_CA');
  });

  it('a cross-trust-domain forgery: the federated CA of partner.org signs an example.org ID', async () => {
    const forged = await issueSvid(s.caB, { id: ALLOWED_ID });
    await expectRefused(forged, 'peer_rejected', 'ERR_CHAIN_UNTRUSTED');
  });

  it('a leaf whose SPIFFE ID has no path', async () => {
    await expectRefused(
      await svidWith(s.caA, ALLOWED_ID, { uris: ['spiffe://example.org'] }),
      'peer_rejected',
      'ERR_SVID_INVALID_ID',
    );
  });

  it('a leaf without a URI SAN', async () => {
    const dnsOnly = await svidWith(s.caA, ALLOWED_ID, { uris: [], dnsNames: ['client.example.org'] });
    await expectRefused(dnsOnly, 'peer_rejected', 'ERR_SVID_NO_URI_SAN');
  });

  it('a leaf with keyCertSign', async () => {
    const ku = await svidWith(s.caA, ALLOWED_ID, { keyUsage: KU.digitalSignature | KU.keyCertSign });
    await expectRefused(ku, 'peer_rejected', 'ERR_SVID_KEY_USAGE');
  });

  it('a chain of more certificates than any SPIFFE deployment sends', async () => {
    // Node hands over only certificates linked by issuer, so the chain must really be that deep.
    let issuer: Issuer = s.caA;
    for (let i = 0; i < 9; i++) issuer = await issueIntermediateCa(issuer);
    await expectRefused(await issueSvid(issuer, { id: ALLOWED_ID }), 'peer_rejected', 'ERR_PEER_CHAIN_TOO_LARGE');
  });

  it('a leaf valid for server authentication only', async () => {
    const serverOnly = await svidWith(s.caA, ALLOWED_ID, { extKeyUsage: [x509.ExtendedKeyUsage.serverAuth] });
    await expectRefused(serverOnly, 'peer_rejected', 'INVALID_PURPOSE');
  });
});
