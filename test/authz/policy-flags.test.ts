// How --policy-file, --policy-mode and --api-keys-file combine with the allow flags: a policy file
// replaces them, dry-run needs a policy, API keys need somewhere to be named.
import { describe, expect, it } from 'vitest';
import { buildConfig, type RawOptions } from '../../src/config.js';
import { configRefusal, FILE_MODE } from '../helpers/config.js';

const BASE = FILE_MODE;

const refusal = (options: RawOptions) => configRefusal({ ...BASE, ...options });

describe('policy flags', () => {
  it('--policy-file alone is a complete authorization configuration (no --allow needed)', () => {
    const config = buildConfig({ ...BASE, 'policy-file': '/etc/policy.yaml' });
    expect(config.policy).toEqual({ file: '/etc/policy.yaml', dryRun: false });
    expect(config.apiKeysFile).toBeUndefined();
  });

  it('--policy-mode enforce and dry-run', () => {
    expect(buildConfig({ ...BASE, 'policy-file': 'p', 'policy-mode': 'enforce' }).policy?.dryRun).toBe(false);
    expect(buildConfig({ ...BASE, 'policy-file': 'p', 'policy-mode': 'dry-run' }).policy?.dryRun).toBe(true);
  });

  it('--allow-issuer alone is an allow rule in JWT mode (no --allow needed), as the README says', () => {
    const config = buildConfig({
      upstream: 'http://127.0.0.1:8080',
      listen: '127.0.0.1:8000',
      'auth-mode': 'jwt',
      'jwt-audience': ['orders'],
      'jwt-issuer': ['keycloak=https://keycloak.example.org'],
      'allow-issuer': ['keycloak'],
    });
    expect(config.auth).toMatchObject({ mode: 'jwt', tokens: { allowIssuers: ['keycloak'] } });
    expect(config.allow).toEqual([]);
  });

  it('--api-keys-file with --policy-file, or with --allow-any', () => {
    expect(buildConfig({ ...BASE, 'policy-file': 'p', 'api-keys-file': 'k' }).apiKeysFile).toBe('k');
    expect(buildConfig({ ...BASE, 'allow-any': true, 'api-keys-file': 'k' }).apiKeysFile).toBe('k');
  });

  const refused: [what: string, options: RawOptions, message: string][] = [
    ['--policy-file with --allow', { 'policy-file': 'p', allow: ['spiffe://example.org/a'] }, '--policy-file replaces'],
    ['--policy-file with --allow-any', { 'policy-file': 'p', 'allow-any': true }, '--policy-file replaces'],
    [
      '--policy-file with --allow-issuer',
      {
        'policy-file': 'p',
        'auth-mode': 'jwt',
        'jwt-audience': ['orders'],
        'jwt-issuer': ['keycloak=https://keycloak.example.org'],
        'allow-issuer': ['keycloak'],
      },
      '--policy-file replaces',
    ],
    ['an empty --policy-file', { 'policy-file': '' }, '--policy-file'],
    [
      '--policy-mode without --policy-file',
      { 'policy-mode': 'dry-run', allow: ['spiffe://example.org/a'] },
      '--policy-mode needs --policy-file',
    ],
    ['an unknown --policy-mode', { 'policy-file': 'p', 'policy-mode': 'audit' }, '--policy-mode "audit"'],
    [
      '--api-keys-file with only --allow',
      { 'api-keys-file': 'k', allow: ['spiffe://example.org/a'] },
      '--api-keys-file needs --policy-file',
    ],
    [
      '--api-keys-file without an inbound listener',
      {
        upstream: undefined,
        outbound: ['127.0.0.1:9000=https://remote.example.org,id=spiffe://example.org/r'],
        'api-keys-file': 'k',
      },
      '--api-keys-file needs an inbound listener',
    ],
    [
      '--policy-file without an inbound listener',
      {
        upstream: undefined,
        outbound: ['127.0.0.1:9000=https://remote.example.org,id=spiffe://example.org/r'],
        'policy-file': 'p',
      },
      '--policy-file needs an inbound listener',
    ],
  ];
  it.each(refused)('refuses %s, naming the flag', (_what, options, message) => {
    const err = refusal(options);
    expect(err.code).toBe('ERR_CONFIG_INVALID');
    expect(err.message).toContain(message);
  });
});
