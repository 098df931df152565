// The one defaults table: buildConfig and the webhook's options apply it, --help prints it, and no help
// text writes a default of its own. Allow rules are compiled once, by buildConfig, and the authorizer uses them.
import { describe, expect, it } from 'vitest';
import { createFlagAuthorizer } from '../../src/authz/policy.js';
import { DEFAULT_CA_LIFETIME_MS, DEFAULT_SVID_LIFETIME_MS } from '../../src/certs/dev-ca.js';
import {
  APIKEY_NEW_OPTIONS,
  CERTS_INIT_OPTIONS,
  CERTS_ISSUE_OPTIONS,
  helpText,
  type OptionSpec,
  POLICY_CHECK_OPTIONS,
} from '../../src/cli.js';
import { buildConfig, type RawOptions } from '../../src/config.js';
import {
  APIKEY_NEW_DEFAULTS,
  CERTS_INIT_DEFAULTS,
  CERTS_ISSUE_DEFAULTS,
  defaultInHelp,
  type FlagDefault,
  INJECT_WEBHOOK_DEFAULTS,
  POLICY_CHECK_DEFAULTS,
  RUN_DEFAULTS,
} from '../../src/config/defaults.js';
import { withDefault } from '../../src/config/option-spec.js';
import { RUN_OPTIONS } from '../../src/config/run-options.js';
import { parseDuration } from '../../src/duration.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { compileAllowRules } from '../../src/spiffe/match.js';
import { INJECT_WEBHOOK_OPTIONS, parseWebhookOptions } from '../../src/webhook/options.js';

const BASE: RawOptions = {
  upstream: 'http://127.0.0.1:8080',
  'mtls-cert-file': '/certs/tls.crt',
  'mtls-key-file': '/certs/tls.key',
  'mtls-ca-file': '/certs/ca.crt',
  allow: ['spiffe://example.org/client'],
};

const D = RUN_DEFAULTS;
const ms = (flag: keyof typeof D) => parseDuration((D[flag] as FlagDefault).value as string, `--${flag}`);

/** JWT mode with the cluster as issuer and TokenReview on: every other setting at its default. */
const TOKEN_REVIEW_MODE = {
  upstream: 'http://127.0.0.1:8080',
  listen: '127.0.0.1:8443',
  'auth-mode': 'jwt',
  'jwt-audience': ['orders'],
  'jwt-issuer': ['k8s=https://kubernetes.default.svc.cluster.local'],
  'k8s-token-review': true,
  'allow-any': true,
} as const satisfies RawOptions;
describe('the defaults table', () => {
  it('is what buildConfig uses for every flag left out', () => {
    const config = buildConfig(BASE);
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 8443 });
    expect(`${config.admin.host}:${config.admin.port}`).toBe(D['admin-listen'].value);
    expect(config.protocol).toBe(D.protocol.value);
    expect(String(config.workers)).toBe(D.workers.value);
    expect(config.upstreamProtocol).toBe(D['upstream-protocol'].value);
    expect(config.auth.mode).toBe(D['auth-mode'].value);
    expect(config.identityHeaders).toEqual(D['identity-header'].value);
    expect(config.xfcc).toBe(D.xfcc.value);
    expect(config.watch).toBe(D.watch.value);
    expect(config.logLevel).toBe(D['log-level'].value);
    expect(config.logFormat).toBe(D['log-format'].value);
    expect(config.allowAny).toBe(D['allow-any'].value);
    expect(config.readyRequiresUpstream).toBe(D['ready-requires-upstream'].value);
    expect(config.reloadIntervalMs).toBeUndefined();
    expect(config.drainTimeoutMs).toBe(ms('drain-timeout'));
    expect(config.limits).toEqual({
      handshakeTimeoutMs: ms('handshake-timeout'),
      headerTimeoutMs: ms('header-timeout'),
      idleTimeoutMs: ms('idle-timeout'),
      upstreamTimeoutMs: ms('upstream-timeout'),
      requestBodyTimeoutMs: ms('request-body-timeout'),
      responseWriteTimeoutMs: ms('response-write-timeout'),
      tunnelIdleTimeoutMs: ms('tunnel-idle-timeout'),
      maxHeaderBytes: Number(D['max-header-bytes'].value),
      maxHeaderCount: Number(D['max-header-count'].value),
      maxConnections: Number(D['max-connections'].value),
      requestBodyMinRate: Number(D['request-body-min-rate'].value),
    });
    // The values the limits had before they moved into the table.
    expect(config.limits).toMatchObject({ maxHeaderBytes: 16384, tunnelIdleTimeoutMs: 300_000 });
  });

  it('gives JWT mode and TokenReview their defaults', () => {
    const config = buildConfig(TOKEN_REVIEW_MODE);
    expect(config.auth.transport).toBe(D['jwt-transport'].value);
    expect(config.auth.tokens).toMatchObject({
      k8sTrustDomain: D['k8s-trust-domain'].value,
      forwardToken: D['jwt-forward-token'].value,
      issuerHeader: D['jwt-issuer-header'].value,
      subjectHeader: D['jwt-subject-header'].value,
      tokenReview: {
        apiServer: 'https://kubernetes.default.svc',
        tokenFile: D['k8s-token-file'].value,
        intervalMs: ms('k8s-token-review-interval'),
        only: D['k8s-token-review-only'].value,
        caFile: undefined,
      },
      maxTokenLifetimeMs: undefined,
      replayCacheSize: undefined,
    });
  });

  it('is what the inject webhook uses for every flag left out', () => {
    const config = parseWebhookOptions({ 'tls-cert-file': 'c', 'tls-key-file': 'k', image: 'spiffe-sidecar:0.1.0' });
    const W = INJECT_WEBHOOK_DEFAULTS;
    expect(`${config.listen.host}:${config.listen.port}`).toBe(W.listen.value);
    expect(config.requestTimeoutMs).toBe(parseDuration(W['request-timeout'].value, 'x'));
    expect(config.logLevel).toBe(W['log-level'].value);
    expect(config.logFormat).toBe(W['log-format'].value);
    expect(config.sidecar).toMatchObject({
      imagePullPolicy: W['image-pull-policy'].value,
      defaultMode: W['default-mode'].value,
      port: Number(W['sidecar-port'].value),
      adminPort: Number(W['admin-port'].value),
      k8sIssuer: W['k8s-issuer'].value,
      k8sTrustDomain: W['k8s-trust-domain'].value,
      k8sTokenAudience: W['k8s-issuer'].value,
      resources: {
        cpuRequest: W['cpu-request'].value,
        memoryRequest: W['memory-request'].value,
        memoryLimit: W['memory-limit'].value,
      },
    });
  });
});

describe('--help', () => {
  it('prints every default from the table, and no help text writes one by hand', () => {
    for (const [topic, specs, defaults] of [
      ['run', RUN_OPTIONS, RUN_DEFAULTS],
      ['inject-webhook', INJECT_WEBHOOK_OPTIONS, INJECT_WEBHOOK_DEFAULTS],
      ['certs init', CERTS_INIT_OPTIONS, CERTS_INIT_DEFAULTS],
      ['certs issue', CERTS_ISSUE_OPTIONS, CERTS_ISSUE_DEFAULTS],
      ['policy check', POLICY_CHECK_OPTIONS, POLICY_CHECK_DEFAULTS],
      ['apikey new', APIKEY_NEW_OPTIONS, APIKEY_NEW_DEFAULTS],
    ] as const) {
      const help = helpText(topic);
      expect(Object.keys(defaults).sort(), topic).toEqual(Object.keys(specs).sort());
      for (const [flag, spec] of Object.entries(specs) as [string, OptionSpec][]) {
        expect(spec.help, `${topic} --${flag}`).not.toMatch(/\bdefault\b|\brequired\b/);
        const shown = defaultInHelp(flag, (defaults as Readonly<Record<string, FlagDefault>>)[flag]);
        if (shown) expect(help, `${topic} --${flag}`).toContain(withDefault(spec.help, shown));
      }
    }
    const run = helpText('run');
    expect(run).toMatch(
      /--k8s-api-server URL +the API server for TokenReview \(default https:\/\/kubernetes\.default\.svc\)\n/,
    );
    expect(run).toContain('set x-forwarded-client-cert (default on; --no-xfcc to turn off)');
    expect(helpText('certs init')).toMatch(
      /--lifetime DURATION +how long the CA is valid, e.g. 30d \(default 365d\)\n/,
    );
    expect(helpText('certs issue')).toMatch(/\(default 1h\)\n/);
  });

  it('--k8s-api-server: what the help shows is the table, and the table is what the code sends TokenReview to', () => {
    const config = buildConfig(TOKEN_REVIEW_MODE);
    const apiServer = config.auth.tokens?.tokenReview?.apiServer;
    expect(apiServer).toBe(RUN_DEFAULTS['k8s-api-server'].value);
    expect(helpText('run')).toContain(`(default ${apiServer})`);
  });

  it("the dev CA lifetimes are the table's", () => {
    expect(DEFAULT_SVID_LIFETIME_MS).toBe(parseDuration(CERTS_ISSUE_DEFAULTS.lifetime.value, 'x'));
    expect(DEFAULT_CA_LIFETIME_MS).toBe(parseDuration(CERTS_INIT_DEFAULTS.lifetime.value, 'x'));
    expect(DEFAULT_SVID_LIFETIME_MS).toBe(3_600_000);
  });
});

describe('allow rules', () => {
  it('are compiled once by buildConfig and carried in the Config', () => {
    const config = buildConfig({ ...BASE, allow: ['spiffe://example.org/ns/*/sa/web'] });
    expect(config.allowRules(parseSpiffeId('spiffe://example.org/ns/prod/sa/web'))).toBe(
      'spiffe://example.org/ns/*/sa/web',
    );
    expect(config.allowRules(parseSpiffeId('spiffe://example.org/ns/prod/sa/db'))).toBeUndefined();
  });

  it('a bad one is refused naming --allow', () => {
    expect(() => buildConfig({ ...BASE, allow: ['spiffe://example.org/a', 'spiffe://example.org/app-*'] })).toThrow(
      /^--allow: invalid allow rule "spiffe:\/\/example.org\/app-\*"/,
    );
  });

  it('the authorizer uses the compiled rules instead of compiling again', () => {
    const caller = { id: parseSpiffeId('spiffe://example.org/client'), method: 'mtls' } as never;
    // `allow` is not even a valid rule: had it been compiled, this would throw.
    const authorizer = createFlagAuthorizer({
      allow: ['not a rule'],
      allowRules: compileAllowRules(['spiffe://example.org/client']),
      allowAny: false,
    });
    expect(authorizer.decide(caller, 'GET', '/')).toEqual({ allow: true, rule: 'spiffe://example.org/client' });
    // Without them it compiles `allow` itself, as before.
    expect(
      createFlagAuthorizer({ allow: ['spiffe://example.org/**'], allowAny: false }).decide(caller, 'GET', '/'),
    ).toEqual({ allow: true, rule: 'spiffe://example.org/**' });
  });
});
