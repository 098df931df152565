// SPIRE's X509-SVID serials are 128 random bits, so half of them have the top bit set and their DER INTEGER
// carries a leading 0x00 (X.690 §8.3.2: the sign). The dev CA never makes such serials (its first byte is
// 0x01-0x7f), which is why only a real SPIRE shows this: the serial the sidecar reports for its own SVID must be
// the certificate's serial as OpenSSL (`openssl x509 -serial`, Node, a TLS client) and the sidecar's own
// `peer_rejected` lines spell it, lower-case hex without the sign byte, or no log line and no `/certs` answer can
// be matched with what a peer sees.
//
// The scenario makes SPIRE issue an SVID whose serial has the top bit set (re-issuing by changing the entry's
// DNS name until it does: one try in two), then compares.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { requestVia } from '../../helpers/client.js';
import { type EchoApp, startEchoApp } from '../../helpers/echo-app.js';
import { servedSerial } from '../../helpers/server-serial.js';
import { SidecarProcess } from './sidecar-process.js';
import { type EntrySpec, type FetchedSvid, SpireDeployment, TRUST_DOMAIN_ID } from './spire-harness.js';

const SERVER: EntrySpec = { id: 'ledger', spiffeId: `${TRUST_DOMAIN_ID}/ns/bank/sa/ledger`, hint: 'ledger' };
const CALLER: EntrySpec = { id: 'teller', spiffeId: `${TRUST_DOMAIN_ID}/ns/bank/sa/teller`, hint: 'teller' };

let spire: SpireDeployment;
let app: EchoApp;
let sidecar: SidecarProcess | undefined;

beforeAll(async () => {
  app = await startEchoApp();
  spire = await SpireDeployment.start([SERVER, CALLER]);
});

afterAll(async () => {
  await sidecar?.stop();
  await spire?.close();
  await app?.close();
});

/** Top bit set: DER adds a 0x00 byte in front (OpenSSL's spelling starts with 8-f). */
const needsSignByte = (svid: FetchedSvid) => /^[89a-f]/.test(svid.serial.padStart(32, '0'));

describe('the serial the sidecar reports for a SPIRE SVID is the one OpenSSL shows', () => {
  it('identity_updated and /certs name the serial a TLS client is served', async () => {
    onTestFailed(() => {
      process.stderr.write(`${spire.logs()}\n`);
    });
    let ours = await spire.waitForSvid(SERVER.spiffeId);
    for (let attempt = 1; !needsSignByte(ours); attempt++) {
      if (attempt > 30) throw new Error('30 SVIDs from SPIRE, none with the top bit of its serial set');
      const previous = ours.serial;
      await spire.updateEntry({ ...SERVER, dnsNames: [`ledger-${attempt}.bank.test`] });
      ours = await spire.waitForSvidWhere(SERVER.spiffeId, (svid) => svid.serial !== previous);
    }
    const caller = await spire.waitForSvid(CALLER.spiffeId);
    sidecar = await SidecarProcess.start('ledger', [
      '--upstream',
      app.url,
      '--workload-api-socket',
      spire.endpoint,
      '--svid-hint',
      SERVER.hint,
      '--allow',
      CALLER.spiffeId,
    ]);
    expect((await requestVia(sidecar.port, caller)).status).toBe(200);
    // What a TLS client is served, in OpenSSL's spelling (lower case): the SVID SPIRE issued.
    const served = await servedSerial(sidecar.port, caller);
    expect(served).toBe(ours.serial);

    const updated = sidecar.events('identity_updated').at(-1)!;
    expect(updated.spiffe_id).toBe(SERVER.spiffeId);
    expect(updated.serial).toBe(served);
    const admin = (sidecar.events('started')[0].admin as { port: number }).port;
    const certs = (await (await fetch(`http://127.0.0.1:${admin}/certs`)).json()) as { svid: { serial: string } };
    expect(certs.svid.serial).toBe(served);
  }, 180_000);
});
