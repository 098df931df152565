// A rule that names an issuer or an API key no caller can have never matches. For an allow rule that is only
// useless; for a deny rule it lets through whom it was written to stop (a review: `issuers: [Keycloak]` beside
// `--jwt-issuer keycloak=…`, and `api_keys: ['api-key:partner-x']`, the audit line's spelling, both loaded and
// never fired, and DELETE went through). The file says "a typo must not silently widen who may call": such a
// policy is refused, at start and on reload, naming the rule and the names that could match.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { createDevCa, issueSvid, tempDir, writeServingFiles } from '../helpers/pki.js';
import { runPolicyCheck } from '../helpers/policy-check.js';
import { startTestSidecar } from '../helpers/sidecar.js';

const policy = (callers: object) =>
  JSON.stringify({
    version: 1,
    rules: [
      { name: 'never-delete', effect: 'deny', methods: ['DELETE'], callers },
      { name: 'everyone', effect: 'allow' },
    ],
  });

const refusal = (text: string, issuers?: string[]) => {
  try {
    parsePolicy(text, 'policy.json', issuers === undefined ? {} : { issuers });
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
  return undefined;
};

describe('callers.issuers names a --jwt-issuer of this sidecar', () => {
  it('refuses a name in another case, with the configured one as a hint', () => {
    expect(refusal(policy({ issuers: ['Keycloak'] }), ['keycloak'])).toMatchObject({
      code: 'ERR_POLICY_INVALID',
      message: expect.stringMatching(
        /rules\[0\]\.callers\.issuers\[0\]: "Keycloak" is not a --jwt-issuer name.*did you mean "keycloak"/,
      ),
    });
  });

  it("refuses the issuer's URL, which is not its name", () => {
    expect(refusal(policy({ issuers: ['https://kc.example/realms/x'] }), ['keycloak'])?.message).toMatch(
      /"https:\/\/kc\.example\/realms\/x" is not a --jwt-issuer name/,
    );
  });

  it('refuses a well-formed name that is not configured, saying which are', () => {
    expect(refusal(policy({ issuers: ['github'] }), ['keycloak', 'k8s'])?.message).toMatch(
      /no --jwt-issuer named "github" \(configured: keycloak, k8s\): the rule could never match/,
    );
    expect(refusal(policy({ issuers: ['github'] }), [])?.message).toMatch(/no --jwt-issuer is configured/);
  });

  it('accepts the configured names; without a configuration (policy check) only their form is checked', () => {
    expect(refusal(policy({ issuers: ['keycloak', 'k8s'] }), ['keycloak', 'k8s'])).toBeUndefined();
    expect(refusal(policy({ issuers: ['github'] }))).toBeUndefined();
    expect(refusal(policy({ issuers: ['GitHub'] }))?.message).toMatch(/"GitHub" is not a --jwt-issuer name/);
  });
});

describe('policy check --issuer takes a --jwt-issuer name, as the running sidecar gives it', () => {
  it("refuses another case or the issuer's URL, instead of judging a caller that never comes", async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, 'policy.json');
      await writeFile(file, policy({ issuers: ['keycloak'] }));
      for (const issuer of ['Keycloak', 'https://kc.example']) {
        await expect(runPolicyCheck('--policy-file', file, '--issuer', issuer, 'DELETE', '/x')).rejects.toMatchObject({
          code: 'ERR_CONFIG_INVALID',
          message: expect.stringContaining('--issuer'),
        });
      }
      // The right name: the deny rule fires.
      expect(await runPolicyCheck('--policy-file', file, '--issuer', 'keycloak', 'DELETE', '/x')).toMatchObject({
        code: 3,
        stdout: expect.stringMatching(/^deny\nrule: never-delete/),
      });
    } finally {
      await dir.remove();
    }
  });
});

describe('callers.api_keys names a key as its line in --api-keys-file does', () => {
  it('refuses the audit spelling api-key:NAME, saying what to write', () => {
    expect(refusal(policy({ api_keys: ['api-key:partner-x'] }))?.message).toMatch(
      /"api-key:partner-x" is not an API key name.*\(write partner-x, without "api-key:"\)/,
    );
  });

  it('accepts a key name', () => {
    expect(refusal(policy({ api_keys: ['partner-x', 'ci.bot_2'] }))).toBeUndefined();
  });
});

describe('the running sidecar checks its policy against its own issuers', () => {
  let dir: { path: string; remove: () => Promise<void> };
  const flags: Record<string, unknown> = {};
  beforeAll(async () => {
    dir = await tempDir();
    const ca = await createDevCa({ trustDomain: 'example.org' });
    await mkdir(join(dir.path, 'certs'));
    const serving = await writeServingFiles(
      join(dir.path, 'certs'),
      await issueSvid(ca, { id: 'spiffe://example.org/server' }),
      ca.certPem,
    );
    const jwks = join(dir.path, 'keycloak.json');
    await writeFile(jwks, JSON.stringify({ keys: [] }));
    Object.assign(flags, {
      upstream: 'http://127.0.0.1:9',
      'mtls-cert-file': serving.certFile,
      'mtls-key-file': serving.keyFile,
      'mtls-ca-file': serving.caFile,
      'jwt-audience': ['orders'],
      'jwt-issuer': ['keycloak=https://kc.example'],
      'jwt-jwks': [`keycloak=${jwks}`],
      watch: false,
    });
  });
  afterAll(() => dir?.remove());

  it('does not start with a deny rule naming an issuer it does not have, and starts with the right name', async () => {
    const bad = join(dir.path, 'bad.json');
    await writeFile(bad, policy({ issuers: ['Keycloak'] }));
    await expect(startTestSidecar({ ...flags, 'policy-file': bad })).rejects.toMatchObject({
      code: 'ERR_POLICY_INVALID',
      message: expect.stringMatching(/--policy-file .*bad\.json.*"Keycloak".*did you mean "keycloak"/),
    });
    const good = join(dir.path, 'good.json');
    await writeFile(good, policy({ issuers: ['keycloak'] }));
    const sidecar = await startTestSidecar({ ...flags, 'policy-file': good });
    await sidecar.close();
  });
});
