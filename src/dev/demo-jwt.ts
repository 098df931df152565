// `npm run demo -- --mode jwt`: the sidecar in JWT mode in front of the demo app. Keys from a local OIDC
// issuer (the `dev issuer` code, in this process) and a JWT-SVID bundle file; five callers: a JWT-SVID and
// an issuer token that are admitted, a JWT-SVID the rules do not admit, a token for another audience, and
// none. True when each got what it should.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type DemoRun, frontOf, httpCall, say, showAuditLog } from './demo-kit.js';
import { startDevIssuer } from './issuer.js';
import { loadOrCreateSigningKey, signToken, spiffeJwtBundleOf } from './jwt-key.js';

const TRUST_DOMAIN = 'example.org';
const ALLOWED_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/frontend`;
const DENIED_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/batch-job`;
const AUDIENCE = 'orders';
const TTL_MS = 5 * 60_000;

export async function jwtDemo(run: DemoRun): Promise<boolean> {
  const dir = await run.tempDir();
  const issuer = await startDevIssuer({ dir: join(dir, 'issuer'), host: '127.0.0.1', port: 0, name: 'dev' });
  run.defer(() => issuer.close());
  say(`1. a dev OIDC issuer "${issuer.name}" on ${issuer.url} (in this process; key in ${dir}/issuer)`);
  // JWT-SVIDs of example.org: signed with the key of a second directory, published as a bundle file.
  const svidKey = await loadOrCreateSigningKey(join(dir, 'example.org'));
  const bundleFile = join(dir, 'example.org.jwt-bundle.json');
  await writeFile(bundleFile, JSON.stringify(spiffeJwtBundleOf(svidKey)));
  say(`   and the JWT bundle of trust domain "${TRUST_DOMAIN}" in ${bundleFile}`);
  const app = await run.startApp('orders');
  say(`2. the demo app "orders" on http://127.0.0.1:${app.port}`);
  const args = [
    ...frontOf(`http://127.0.0.1:${app.port}`),
    '--auth-mode',
    'jwt',
    '--jwt-audience',
    AUDIENCE,
    ...issuer.sidecarFlags,
    '--jwt-bundle-file',
    `${TRUST_DOMAIN}=${bundleFile}`,
    '--allow',
    ALLOWED_ID,
    '--allow-issuer',
    issuer.name,
  ];
  const sidecar = await run.startSidecar(args);
  const url = `http://127.0.0.1:${sidecar.port}/orders/42`;
  say(`3. the sidecar in JWT mode in front of it on http://127.0.0.1:${sidecar.port}:`);
  say(`   spiffe-sidecar run ${args.join(' ')}`);
  say();
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const issuerKey = await loadOrCreateSigningKey(join(dir, 'issuer'));
  const tokens = {
    svid: await signToken(svidKey, { sub: ALLOWED_ID, aud: [AUDIENCE], ttlMs: TTL_MS }),
    oidc: await signToken(issuerKey, {
      sub: 'ci-job',
      aud: [AUDIENCE],
      ttlMs: TTL_MS,
      issuer: issuer.url,
    }),
    denied: await signToken(svidKey, { sub: DENIED_ID, aud: [AUDIENCE], ttlMs: TTL_MS }),
    otherAudience: await signToken(svidKey, { sub: ALLOWED_ID, aud: ['payments'], ttlMs: TTL_MS }),
  };
  const answers = {
    // A caller trying to claim another identity: the sidecar replaces these headers.
    svid: await httpCall(url, {
      ...bearer(tokens.svid),
      'x-spiffe-id': 'spiffe://example.org/ns/demo/sa/admin',
      'x-jwt-subject': 'admin',
    }),
    oidc: await httpCall(url, bearer(tokens.oidc)),
    denied: await httpCall(url, bearer(tokens.denied)),
    otherAudience: await httpCall(url, bearer(tokens.otherAudience)),
    none: await httpCall(url),
  };
  say(`caller ${ALLOWED_ID} with a JWT-SVID for "${AUDIENCE}" (allowed), sending a spoofed x-spiffe-id:`);
  say(`   ${answers.svid}`);
  say(`caller "ci-job" with a token of issuer "${issuer.name}" for "${AUDIENCE}" (allowed by --allow-issuer):`);
  say(`   ${answers.oidc}`);
  say(`caller ${DENIED_ID} with a JWT-SVID for "${AUDIENCE}" (not allowed):`);
  say(`   ${answers.denied}`);
  say(`caller ${ALLOWED_ID} with a JWT-SVID for "payments" (another service's audience):`);
  say(`   ${answers.otherAudience}`);
  say('caller without a token:');
  say(`   ${answers.none}`);
  await showAuditLog(sidecar, 5);
  const ok =
    answers.svid.startsWith('HTTP 200') &&
    answers.svid.includes(`"x-spiffe-id":"${ALLOWED_ID}"`) &&
    answers.oidc.startsWith('HTTP 200') &&
    answers.oidc.includes(`"x-jwt-issuer":"${issuer.name}","x-jwt-subject":"ci-job"`) &&
    !answers.oidc.includes('"x-spiffe-id"') &&
    answers.denied.startsWith('HTTP 403') &&
    answers.otherAudience.startsWith('HTTP 401') &&
    answers.otherAudience.includes('ERR_JWT_AUDIENCE') &&
    answers.none.startsWith('HTTP 401') &&
    answers.none.includes('ERR_JWT_MISSING') &&
    app.requests() === 2;
  say();
  say(
    ok
      ? 'demo passed: the app saw only the two admitted callers, with their verified identities.'
      : 'demo FAILED: see the answers above.',
  );
  return ok;
}
