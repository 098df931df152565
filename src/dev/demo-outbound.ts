// `npm run demo -- --mode outbound`: two services on one host. App A speaks plain HTTP to its own sidecar
// (outbound only); that sidecar carries A's identity over mTLS to sidecar B, in front of app B, which sees
// A's verified SPIFFE ID. A second route expects another SPIFFE ID than B's and is refused before a byte
// reaches B. The two sidecars have distinct listen and admin ports. True when all of it happened.
import { join } from 'node:path';
import { createDevCa, issueSvid, saveSvid } from '../certs/dev-ca.js';
import { auditLines, type DemoRun, frontOf, httpCall, say, svidFileFlags } from './demo-kit.js';

const TRUST_DOMAIN = 'example.org';
const A_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/frontend`;
const B_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/orders`;
const WRONG_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/payments`;

export async function outboundDemo(run: DemoRun): Promise<boolean> {
  const dir = await run.tempDir();
  say(`1. a dev trust domain "${TRUST_DOMAIN}" in ${dir}`);
  const ca = await createDevCa({ trustDomain: TRUST_DOMAIN });
  const [a, b] = await Promise.all([A_ID, B_ID].map((id) => issueSvid(ca, { id, lifetimeMs: 15 * 60_000 })));
  await saveSvid(a, ca.certPem, join(dir, 'frontend'));
  await saveSvid(b, ca.certPem, join(dir, 'orders'));
  say(`   SVIDs: ${A_ID} (service A, the caller), ${B_ID} (service B)`);
  const appB = await run.startApp('orders');
  say(`2. app B "orders" on http://127.0.0.1:${appB.port}`);
  const argsB = [...frontOf(`http://127.0.0.1:${appB.port}`), ...svidFileFlags(join(dir, 'orders')), '--allow', A_ID];
  const sidecarB = await run.startSidecar(argsB);
  say(
    `3. sidecar B in front of it on https://127.0.0.1:${sidecarB.port} (admin port ${sidecarB.adminPort}), admitting A:`,
  );
  say(`   spiffe-sidecar run ${argsB.join(' ')}`);
  const remote = `https://127.0.0.1:${sidecarB.port}`;
  const argsA = [
    '--admin-listen',
    '127.0.0.1:0',
    ...svidFileFlags(join(dir, 'frontend')),
    '--outbound',
    `127.0.0.1:0=${remote},id=${B_ID}`,
    '--outbound',
    `127.0.0.1:0=${remote},id=${WRONG_ID}`,
  ];
  const sidecarA = await run.startSidecar(argsA);
  const [route, wrongRoute] = sidecarA.outboundPorts.map((port) => `http://127.0.0.1:${port}`);
  say(`4. sidecar A, outbound only (admin port ${sidecarA.adminPort}), with two routes for app A:`);
  say(`   ${route} → ${remote}, which must be ${B_ID}`);
  say(`   ${wrongRoute} → ${remote}, which must be ${WRONG_ID}`);
  say(`   spiffe-sidecar run ${argsA.join(' ')}`);
  say();
  // App A: plain HTTP to its own sidecar on loopback, trying to claim another identity on the way.
  const answers = {
    allowed: await httpCall(`${route}/orders/42`, { 'x-spiffe-id': 'spiffe://example.org/ns/demo/sa/admin' }),
    wrong: await httpCall(`${wrongRoute}/orders/42`),
  };
  say(`app A calls ${route}/orders/42 in plain HTTP, sending a spoofed x-spiffe-id:`);
  say(`   ${answers.allowed}`);
  say(`app A calls ${wrongRoute}/orders/42 (a route expecting ${WRONG_ID}):`);
  say(`   ${answers.wrong}`);
  await Promise.all([
    sidecarA.waitFor((l) => l.event === 'outbound_rejected').catch(() => undefined),
    sidecarB.waitFor((l) => l.event === 'authz').catch(() => undefined),
  ]);
  say();
  say("sidecar A's log (the refused remote):");
  for (const line of auditLines(sidecarA.logs)) say(`   ${line}`);
  say("sidecar B's audit log:");
  for (const line of auditLines(sidecarB.logs)) say(`   ${line}`);
  const ok =
    sidecarA.adminPort !== sidecarB.adminPort &&
    answers.allowed.startsWith('HTTP 200') &&
    answers.allowed.includes(`"x-spiffe-id":"${A_ID}"`) &&
    answers.wrong.startsWith('HTTP 502') &&
    answers.wrong.includes('remote_identity_mismatch') &&
    sidecarA.logs.some((l) => l.event === 'outbound_rejected' && l.reason === 'remote_identity_mismatch') &&
    appB.requests() === 1;
  say();
  say(
    ok
      ? "demo passed: app B saw A's verified identity, and A's sidecar refused to talk to a service that was not the one its route names."
      : 'demo FAILED: see the answers above.',
  );
  return ok;
}
