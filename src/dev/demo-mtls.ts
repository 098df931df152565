// `npm run demo` (mode mtls, the default): a dev trust domain in a temp dir, the demo app, the real sidecar
// process in front of it, and three callers: allowed, denied, and one without a certificate. True when each
// got what it should.
import { request } from 'node:https';
import { join } from 'node:path';
import { createDevCa, type IssuedCertificate, issueSvid, saveSvid } from '../certs/dev-ca.js';
import { type DemoRun, frontOf, say, showAuditLog, svidFileFlags } from './demo-kit.js';

const TRUST_DOMAIN = 'example.org';
const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/orders`;
const ALLOWED_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/frontend`;
const DENIED_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/batch-job`;

/** An HTTPS call with this SVID (or none) as the client certificate, as one line. */
function call(port: number, svid: IssuedCertificate | undefined): Promise<string> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/orders/42',
        // A caller trying to claim another identity: the sidecar replaces this header.
        headers: { 'x-spiffe-id': 'spiffe://example.org/ns/demo/sa/admin' },
        cert: svid?.chainPem,
        key: svid?.keyPem,
        // The demo client does not check the server; a real peer sidecar verifies its SPIFFE ID.
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve(`HTTP ${res.statusCode} ${body}`));
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`connection rejected (${err.code ?? err.message})`));
    req.end();
  });
}

export async function mtlsDemo(run: DemoRun): Promise<boolean> {
  const dir = await run.tempDir();
  say(`1. a dev trust domain "${TRUST_DOMAIN}" in ${dir}`);
  const ca = await createDevCa({ trustDomain: TRUST_DOMAIN });
  const [server, allowed, denied] = await Promise.all(
    [SERVER_ID, ALLOWED_ID, DENIED_ID].map((id) => issueSvid(ca, { id, lifetimeMs: 15 * 60_000 })),
  );
  await saveSvid(server, ca.certPem, join(dir, 'orders'));
  say(`   SVIDs: ${SERVER_ID} (the sidecar), ${ALLOWED_ID}, ${DENIED_ID}`);
  const app = await run.startApp('orders');
  say(`2. the demo app "orders" on http://127.0.0.1:${app.port}`);
  const args = [
    ...frontOf(`http://127.0.0.1:${app.port}`),
    ...svidFileFlags(join(dir, 'orders')),
    '--allow',
    ALLOWED_ID,
  ];
  const sidecar = await run.startSidecar(args);
  const port = sidecar.port as number;
  say(`3. the sidecar in front of it on https://127.0.0.1:${port}:`);
  say(`   spiffe-sidecar ${args.join(' ')}`);
  say();
  const answers = {
    allowed: await call(port, allowed),
    denied: await call(port, denied),
    anonymous: await call(port, undefined),
  };
  say(`caller ${ALLOWED_ID} (allowed), sending a spoofed x-spiffe-id:`);
  say(`   ${answers.allowed}`);
  say(`caller ${DENIED_ID} (not allowed):`);
  say(`   ${answers.denied}`);
  say('caller without a client certificate:');
  say(`   ${answers.anonymous}`);
  await showAuditLog(sidecar, 3);
  const ok =
    answers.allowed.startsWith('HTTP 200') &&
    answers.allowed.includes(`"x-spiffe-id":"${ALLOWED_ID}"`) &&
    answers.denied.startsWith('HTTP 403') &&
    answers.anonymous.startsWith('connection rejected') &&
    app.requests() === 1;
  say();
  say(ok ? 'demo passed: the app saw only the verified caller.' : 'demo FAILED: see the answers above.');
  return ok;
}
