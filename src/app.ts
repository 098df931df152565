// The composition root: builds the identity source (files or the Workload API), the policy and the
// inbound listener from a Config, and closes them in reverse order. What a mode does not use is not
// loaded (gRPC, jose, YAML, the outbound proxy): startup time and memory are per pod, times the fleet.
import type { CompiledPolicy } from './authz/policy-file.js';
import type { ClaimHeaderMapping } from './proxy/claim-headers.js';
import type { HeaderPolicy } from './proxy/headers.js';
import type { AuthMethod } from './authn/identity.js';
import type { AssertionKey } from './proxy/identity-assertion.js';
import { type AddressInfo, connect } from 'node:net';
import type { KeyFetchMetrics, Metrics, ReloadedFile } from './admin/metrics.js';
import { DeferredMetrics, type ProxyMetrics } from './proxy/proxy-metrics.js';

/** prom-client's Registry.PROMETHEUS_CONTENT_TYPE, without loading prom-client. */
const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
import { AdminServer, certsDocument, type Readiness } from './admin/server.js';
import type { ApiKeySet } from './authn/api-keys.js';
import type { ApiKeysDocument } from './authn/api-key-usage.js';
import { type Authorizer, createFileAuthorizer, createFlagAuthorizer } from './authz/policy.js';
import { type Config, headerOwners, type IdentitySourceConfig, type OutboundRouteConfig } from './config.js';
import { SidecarError } from './errors.js';
import type { FileIdentitySource } from './identity/file-source.js';
import type { IdentitySource } from './identity/source.js';
import { type FileWatcher, watchIdentityFiles } from './file-watcher.js';
import type { WorkloadApiIdentitySource } from './identity/workload-api-source.js';
import type { JwtMode } from './jwt-mode.js';
import type { Logger } from './log.js';
import { DEFAULT_ISSUER_HEADER, DEFAULT_SUBJECT_HEADER } from './proxy/headers.js';
import { InboundProxy } from './proxy/inbound.js';
import type { TcpInboundProxy } from './proxy/tcp.js';
import type { OutboundProxy } from './proxy/outbound.js';
import type { TcpOutboundProxy } from './proxy/tcp-outbound.js';
import type { H2OutboundProxy } from './proxy/h2-outbound.js';
import { ReloadingFile, type ReloadOutcome } from './reloading-file.js';
import { Teardown } from './teardown.js';

export interface Sidecar {
  /** Our X.509 identity; undefined in JWT mode over plain HTTP without an identity source. */
  readonly identity: FileIdentitySource | WorkloadApiIdentitySource | undefined;
  address(): AddressInfo;
  adminAddress(): AddressInfo;
  /** The outbound routes' listen addresses, in --outbound order. */
  outboundAddresses(): AddressInfo[];
  /**
   * SIGHUP: re-reads every file the sidecar reads (identity, policy, API keys, JWT key files), whatever
   * --watch says; the Workload API pushes its own updates.
   */
  reload(trigger: string): Promise<void>;
  /** SIGTERM: not ready, stop accepting, let in-flight requests finish (up to --drain-timeout), close. */
  stop(): Promise<void>;
  /** Close at once. */
  close(): Promise<void>;
}

/** The `file` label of spiffe_sidecar_file_reloads_total, by flag. */
const RULE_FILE_LABELS: Readonly<Record<string, string>> = { '--policy-file': 'policy', '--api-keys-file': 'api_keys' };

/** At most this many key fetches wait for prom-client (it loads right after the start: a handful at most). */
const MAX_PENDING_FETCHES = 10_000;

/** JWT mode's key fetches (the first ones happen before prom-client is loaded), replayed once it is. */
class DeferredKeyFetchMetrics implements KeyFetchMetrics {
  private target: KeyFetchMetrics | undefined;
  private pending: ((m: KeyFetchMetrics) => void)[] = [];

  attach(target: KeyFetchMetrics): void {
    this.target = target;
    for (const call of this.pending) call(target);
    this.pending = [];
  }

  jwksFetch(...args: Parameters<KeyFetchMetrics['jwksFetch']>): void {
    this.call((m) => m.jwksFetch(...args));
  }

  tokenReview(...args: Parameters<KeyFetchMetrics['tokenReview']>): void {
    this.call((m) => m.tokenReview(...args));
  }

  private call(f: (m: KeyFetchMetrics) => void): void {
    if (this.target) f(this.target);
    else if (this.pending.length < MAX_PENDING_FETCHES) this.pending.push(f);
  }
}

interface OpenedSource {
  identity: FileIdentitySource | WorkloadApiIdentitySource;
  stopTriggers: () => Promise<void>;
}

/** File mode: the files and what makes them reload (watch, interval). */
async function openFileSource(
  source: IdentitySourceConfig & { kind: 'files' },
  config: Config,
  log: Logger,
): Promise<OpenedSource> {
  const { files } = source;
  // Loaded here: JWT mode without an identity source never loads the file source.
  const { FileIdentitySource } = await import('./identity/file-source.js');
  const identity = await FileIdentitySource.open(files, log);
  const watcher: FileWatcher | undefined = config.watch
    ? await watchIdentityFiles(
        [files.certFile, files.keyFile, files.caFile, ...files.federatedBundles.map((b) => b.file)],
        () => void identity.reload('watch'),
        log,
      )
    : undefined;
  // A change between loading and the watcher being ready would otherwise wait for the next event.
  if (watcher) void identity.reload('watch');
  const interval = config.reloadIntervalMs
    ? setInterval(() => void identity.reload('interval'), config.reloadIntervalMs).unref()
    : undefined;
  return {
    identity,
    stopTriggers: async () => {
      clearInterval(interval);
      await watcher?.close();
    },
  };
}

/** Can the app accept a TCP connection (for --ready-requires-upstream)? */
function upstreamReachable(config: Config, timeoutMs = 1000): Promise<boolean> {
  const tcp = config.tcp?.upstream;
  const target =
    tcp?.kind === 'unix'
      ? { path: tcp.path }
      : tcp
        ? { host: tcp.host, port: tcp.port }
        : { host: config.upstream.hostname.replace(/^\[|\]$/g, ''), port: Number(config.upstream.port || 80) };
  return new Promise((resolve) => {
    const socket = connect(target);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The egress routes' listeners, and the Workload API clients of their JWT routes, closed by `teardown`. */
async function openOutbound(
  config: Config,
  identity: IdentitySource | undefined,
  log: Logger,
  teardown: Teardown,
  jwt: JwtMode | undefined,
): Promise<(OutboundProxy | TcpOutboundProxy | H2OutboundProxy)[]> {
  const outbound: (OutboundProxy | TcpOutboundProxy | H2OutboundProxy)[] = [];
  const outboundClosers: (() => void)[] = [];
  // The routes' own clients (Workload API JWT-SVID fetchers), then the routes' listeners.
  teardown.defer(() => {
    for (const closeClient of outboundClosers) closeClient();
  });
  teardown.defer(async () => {
    for (const route of outbound) await route.close();
  });
  if (config.outbound.length > 0) {
    const { OutboundProxy } = await import('./proxy/outbound.js');
    const { TcpOutboundProxy } = await import('./proxy/tcp-outbound.js');
    const { outboundRoute, tcpOutboundRoute } = await import('./outbound-routes.js');
    // auth=forward passes on only a token this sidecar's own token checks accept (buildConfig requires them).
    const authenticator = jwt?.authenticator;
    const verifyToken =
      authenticator && (async (authorization: string) => (await authenticator.authenticate(authorization)).ok);
    const httpRoute = (route: OutboundRouteConfig) =>
      outboundRoute(route, config, identity, log, outboundClosers, { verifyToken });
    for (const route of config.outbound) {
      outbound.push(
        route.protocol === 'tcp'
          ? await TcpOutboundProxy.start(tcpOutboundRoute(route, config), identity, log)
          : route.protocol === 'h2'
            ? await (await import('./proxy/h2-outbound.js')).H2OutboundProxy.start(httpRoute(route), identity, log)
            : await OutboundProxy.start(httpRoute(route), identity, log),
      );
    }
  }
  return outbound;
}

/** The inbound listener: HTTP (mTLS or JWT) or, with --protocol tcp, bytes; none without --upstream. */
async function openInbound(
  config: Config,
  deps: {
    identity: IdentitySource | undefined;
    servesTls: boolean;
    authorizer: Authorizer;
    jwt: JwtMode | undefined;
    apiKeys: (() => ApiKeySet) | undefined;
    apiKeyFormat: HeaderPolicy['apiKeyFormat'];
    claimHeaders: () => readonly ClaimHeaderMapping[];
    assertion: HeaderPolicy['assertion'];
    log: Logger;
    metrics: ProxyMetrics;
  },
): Promise<InboundProxy | TcpInboundProxy | undefined> {
  const { auth } = config;
  return !config.inbound
    ? undefined
    : config.tcp
      ? await (
          await import('./proxy/tcp.js')
        ).TcpInboundProxy.start({
          host: config.listen.host,
          port: config.listen.port,
          upstream: config.tcp.upstream,
          identity: deps.identity as NonNullable<typeof deps.identity>,
          authorizer: deps.authorizer,
          proxyProtocol: config.tcp.proxyProtocol,
          log: deps.log,
          limits: config.limits,
          metrics: deps.metrics,
        })
      : await InboundProxy.start({
          host: config.listen.host,
          port: config.listen.port,
          upstream: config.upstream,
          identity: deps.servesTls ? deps.identity : undefined,
          auth: {
            certificates: certificatesOf(config, deps.apiKeys !== undefined),
            authenticator: deps.jwt?.authenticator,
          },
          authorizer: deps.authorizer,
          upstreamProtocol: config.upstreamProtocol,
          http1Engine: config.http1Engine,
          dryRun: config.policy?.dryRun,
          apiKeys: deps.apiKeys,
          headers: {
            identityHeaders: config.identityHeaders,
            xfcc: config.xfcc,
            issuerHeader: auth.tokens?.issuerHeader ?? DEFAULT_ISSUER_HEADER,
            subjectHeader: auth.tokens?.subjectHeader ?? DEFAULT_SUBJECT_HEADER,
            stripAuthorization: auth.tokens !== undefined && !auth.tokens.forwardToken,
            claimHeaders: deps.claimHeaders,
            assertion: deps.assertion,
            apiKeyFormat: deps.apiKeyFormat,
          },
          log: deps.log,
          limits: config.limits,
          metrics: deps.metrics,
        });
}

/**
 * Whether the inbound listener asks for client certificates, and must have one: mTLS mode requires one
 * unless tokens or API keys are accepted too; JWT mode asks for one only with --jwt-transport mtls.
 */
function certificatesOf(config: Config, apiKeys: boolean): 'off' | 'optional' | 'required' {
  const { auth } = config;
  if (auth.transport !== 'mtls') return 'off';
  return auth.mode === 'mtls' && !auth.tokens && !apiKeys ? 'required' : 'optional';
}

/** How callers may authenticate on the HTTP listener, for the started line. */
function acceptedMethods(config: Config, apiKeys: boolean): AuthMethod[] {
  const { auth } = config;
  const tokens = auth.tokens;
  const methods: AuthMethod[] = [];
  if (auth.transport === 'mtls') methods.push('mtls');
  if (tokens && (tokens.bundleFiles.length > 0 || config.source?.kind === 'workload-api')) methods.push('jwt-svid');
  if (tokens?.issuers.some((i) => i.kind === 'oidc')) methods.push('oidc');
  if (tokens?.issuers.some((i) => i.kind === 'k8s')) methods.push('k8s-sa');
  if (apiKeys) methods.push('api-key');
  return methods;
}

/** The app, as the started line names it. */
function upstreamLabel(config: Config): string {
  const tcp = config.tcp?.upstream;
  if (!tcp) return config.upstream.origin;
  if (tcp.kind === 'unix') return `unix://${tcp.path}`;
  return `tcp://${tcp.host.includes(':') ? `[${tcp.host}]` : tcp.host}:${tcp.port}`;
}

/** `worker`: one of `--workers` (the primary serves the admin endpoints; this process answers it). */
export async function startSidecar(config: Config, log: Logger, role: 'alone' | 'worker' = 'alone'): Promise<Sidecar> {
  const teardown = new Teardown();
  try {
    return await openSidecar(config, log, role, teardown);
  } catch (err) {
    await teardown.closeAll().catch(() => {});
    throw err;
  }
}

/**
 * The policy file's parser, which also refuses claim mappings onto a header the sidecar sets already (a
 * claim under an identity header would be a spoofed identity): a reload that does is a failed reload.
 */
async function policyParser(config: Config): Promise<(text: string, label: string) => CompiledPolicy> {
  const { parsePolicy } = await import('./authz/policy-file.js');
  const taken = headerOwners(config);
  const context = { issuers: (config.auth.tokens?.issuers ?? []).map((i) => i.name) };
  return (text, label) => {
    const policy = parsePolicy(text, label, context);
    for (const mapping of policy.claimHeaders ?? []) {
      const owner = taken.get(mapping.header);
      if (owner)
        throw new SidecarError(
          'ERR_POLICY_INVALID',
          `${label}: claim_headers: ${mapping.text}: "${mapping.header}" is set by ${owner}; pick another header`,
        );
    }
    return policy;
  };
}

/** The claim mappings in force: the flags', then the policy file's (the same array until a reload). */
function claimMappings(
  config: Config,
  policyFile: ReloadingFile<CompiledPolicy> | undefined,
): () => readonly ClaimHeaderMapping[] {
  let policy: CompiledPolicy | undefined;
  let mappings = config.claimHeaders;
  return () => {
    const current = policyFile?.current();
    if (current !== policy) {
      policy = current;
      mappings = [...config.claimHeaders, ...(current?.claimHeaders ?? [])];
    }
    return mappings;
  };
}

/** `--identity-assertion`: signs as our SPIFFE ID (or `spiffe-sidecar` without one), for the audience given or our ID. */
async function openAssertion(
  config: Config,
  key: AssertionKey,
  identity: IdentitySource | undefined,
): Promise<HeaderPolicy['assertion']> {
  const options = config.identityAssertion as NonNullable<Config['identityAssertion']>;
  const { createIdentityAssertion, assertedCaller } = await import('./proxy/identity-assertion.js');
  const self = identity?.status().ready ? identity.current().svid.id.toString() : undefined;
  const audience = options.audience ?? self;
  // buildConfig requires an audience without an identity of our own, and SPIRE mode waited for the SVID.
  if (audience === undefined)
    throw new SidecarError('ERR_CONFIG_MISSING', '--identity-assertion needs --identity-assertion-audience here');
  const assertion = createIdentityAssertion({
    issuer: self ?? 'spiffe-sidecar',
    audience,
    ttlSeconds: options.ttlSeconds,
    key,
  });
  return {
    header: options.header,
    sign: (caller) =>
      assertion.token(
        assertedCaller(caller.identity, { certificate: caller.certificate?.id, rule: caller.decision?.rule }),
      ),
  };
}

/**
 * `--api-keys-file` and its flags: the file (reloading; each reload keeps the last-use records of the keys
 * still listed), where callers send keys, and the /api-keys document and key gauges made at request time.
 */
async function openApiKeys(config: Config, file: string, log: Logger) {
  const { apiKeyFormat, parseApiKeys } = await import('./authn/api-keys.js');
  const { apiKeyCounts, apiKeysDocument, newApiKeyUsage } = await import('./authn/api-key-usage.js');
  const { header, prefix, unusedAfterMs } = config.apiKeys;
  const usage = newApiKeyUsage(Date.now());
  const reloading = await ReloadingFile.open(
    '--api-keys-file',
    file,
    (text, label) => parseApiKeys(text, label, { prefix, usage }),
    log,
  );
  const document = (): ApiKeysDocument => apiKeysDocument(reloading.current(), usage, unusedAfterMs, Date.now());
  return {
    file: reloading,
    format: apiKeyFormat(header, prefix),
    document,
    counts: () => apiKeyCounts(document()),
  };
}

/** Opens everything in order, each thing's closing registered on `teardown` as soon as it is open. */
async function openSidecar(
  config: Config,
  log: Logger,
  role: 'alone' | 'worker',
  teardown: Teardown,
): Promise<Sidecar> {
  const { source, auth } = config;
  // The policy and API key files come first: a broken one stops the start before anything listens.
  const policyFile = config.policy
    ? await ReloadingFile.open('--policy-file', config.policy.file, await policyParser(config), log)
    : undefined;
  const keys = config.apiKeysFile ? await openApiKeys(config, config.apiKeysFile, log) : undefined;
  const apiKeysFile = keys?.file;
  if (policyFile) teardown.defer(() => policyFile.close());
  if (apiKeysFile) teardown.defer(() => apiKeysFile.close());
  // File mode fails right here on bad files; SPIRE mode opens its stream and waits below, with the
  // admin listener already up (alive, not ready) so that a startup probe can tell.
  const { identity, stopTriggers } =
    source === undefined
      ? { identity: undefined, stopTriggers: async () => {} }
      : source.kind === 'files'
        ? await openFileSource(source, config, log)
        : {
            identity: (await import('./identity/workload-api-source.js')).WorkloadApiIdentitySource.start({
              endpoint: source.endpoint,
              hint: source.hint,
              log,
            }),
            stopTriggers: async () => {},
          };
  teardown.defer(() => identity?.close());
  teardown.defer(stopTriggers);
  // The rate-limit store needs our SVID (rediss://); it never delays the start (see open-shared-rate-limits.ts).
  const sharedRateLimits =
    config.rateLimitStore && policyFile
      ? await (
          await import('./authz/open-shared-rate-limits.js')
        ).openSharedRateLimits(config.rateLimitStore, config.workers, identity, log)
      : undefined;
  if (sharedRateLimits) teardown.defer(() => sharedRateLimits.close());
  const authorizer = policyFile
    ? createFileAuthorizer(() => policyFile.current(), {
        shared: sharedRateLimits && ((rule, limit) => sharedRateLimits.limiterFor(rule, limit)),
      })
    : createFlagAuthorizer({
        allow: config.allow,
        allowAny: config.allowAny,
        allowRules: config.allowRules,
        allowIssuers: auth.tokens?.allowIssuers ?? [],
      });
  // The rule files reload like the identity files: on change, on SIGHUP, and every --reload-interval.
  const ruleFiles = [policyFile, apiKeysFile].filter((f) => f !== undefined);
  const ruleInterval = config.reloadIntervalMs
    ? setInterval(() => {
        for (const f of ruleFiles) void f.reload('interval');
      }, config.reloadIntervalMs).unref()
    : undefined;
  teardown.defer(() => clearInterval(ruleInterval));
  const servesTls = config.inbound && auth.transport !== 'plain';
  const outboundNeedsSvid = config.outbound.some(
    (r) => r.remote.protocol === 'https:' || r.remote.protocol === 'tls:' || r.oauth?.clientAuth === 'mtls',
  );
  let admin: AdminServer | undefined;
  let draining = false;
  const proxyMetrics = new DeferredMetrics();
  const keyFetchMetrics = new DeferredKeyFetchMetrics();
  let metricsLoaded: Promise<Metrics> | undefined;
  /** Ready only once the listener is bound, and not while draining. */
  let serving = false;
  if (config.watch) for (const f of ruleFiles) await f.watch();
  const jwt: JwtMode | undefined = auth.tokens
    ? await (await import('./jwt-mode.js')).openJwt(config, auth.tokens, log, keyFetchMetrics)
    : undefined;
  if (jwt) teardown.defer(() => jwt.close());
  /** Everything but the upstream probe: cheap enough for a metrics scrape. */
  const readyNow = (): Readiness => {
    const status = identity?.status();
    if (status && !status.ready && servesTls) return { ready: false, reason: status.reason };
    if (jwt && !jwt.hasKeys()) return { ready: false, reason: 'waiting_for_jwt_keys' };
    if (draining) return { ready: false, reason: 'draining' };
    if (!serving) return { ready: false, reason: 'starting' };
    return { ready: true };
  };
  const jwtAuthenticator = jwt?.authenticator;
  const reloadedFiles: ReloadedFile[] = [
    ...ruleFiles.map((f) => ({ label: RULE_FILE_LABELS[f.flag], stats: () => f.stats() })),
    ...(jwt?.reloadedFiles ?? []),
  ];
  // prom-client is loaded once we serve (or at the first scrape): it is 50 ms of startup otherwise.
  const loadMetrics = (): Promise<Metrics> =>
    (metricsLoaded ??= import('./admin/metrics.js').then((m) => {
      const real = m.createMetrics(identity, jwtAuthenticator, () => readyNow().ready, sharedRateLimits, {
        files: reloadedFiles,
        jwksIssuers: jwt?.remoteIssuers,
        tokenReview: jwt?.tokenReview,
        apiKeys: keys && { counts: () => keys.counts(), perWorker: role === 'worker' },
      });
      proxyMetrics.attach(real.proxy);
      keyFetchMetrics.attach(real.keyFetches);
      return real;
    }));
  const readiness = async (): Promise<Readiness> => {
    const now = readyNow();
    if (!now.ready) return now;
    if (config.readyRequiresUpstream && !(await upstreamReachable(config))) {
      return { ready: false, reason: 'upstream_unreachable' };
    }
    return { ready: true };
  };
  // The assertion key is made before the admin listener serves its JWKS (a worker takes the primary's).
  const assertionKey = config.identityAssertion
    ? await (
        await import('./proxy/identity-assertion.js')
      ).assertionKey(role === 'worker' ? await (await import('./workers.js')).assertionKeyForWorker() : undefined)
    : undefined;
  if (role === 'worker') {
    const { serveAdminToPrimary } = await import('./workers.js');
    serveAdminToPrimary(
      (await loadMetrics()).registry,
      readiness,
      () => certsDocument(identity, source?.kind ?? 'none'),
      keys?.document,
    );
  } else {
    admin = await AdminServer.start({
      ...config.admin,
      registry: {
        metrics: async () => (await loadMetrics()).registry.metrics(),
        contentType: PROMETHEUS_CONTENT_TYPE,
      },
      identity,
      source: source?.kind ?? 'none',
      readiness,
      apiKeys: keys?.document,
      assertionJwks: assertionKey && (() => assertionKey.jwks),
    });
    const adminServer = admin;
    teardown.defer(() => adminServer.close());
  }
  // The assertion names our SPIFFE ID (iss, and aud by default): it waits for the first SVID too.
  if (identity?.kind === 'workload_api' && (servesTls || outboundNeedsSvid || config.identityAssertion)) {
    const spire = identity as WorkloadApiIdentitySource;
    log.info(
      { event: 'waiting_for_identity', endpoint: spire.endpoint.address },
      'waiting for an SVID from the Workload API',
    );
    await spire.firstIdentity();
  }
  const outbound = await openOutbound(config, identity, log, teardown, jwt);
  const inbound = await openInbound(config, {
    identity,
    servesTls,
    authorizer,
    jwt,
    apiKeys: apiKeysFile ? () => apiKeysFile.current() : undefined,
    apiKeyFormat: keys?.format,
    claimHeaders: claimMappings(config, policyFile),
    assertion: assertionKey && (await openAssertion(config, assertionKey, identity)),
    log,
    metrics: proxyMetrics,
  });
  if (inbound) teardown.defer(() => inbound.close());
  setImmediate(() => void loadMetrics());
  serving = true;
  const svid = identity && identity.status().reason !== 'waiting_for_svid' ? identity.current().svid : undefined;
  log.info(
    {
      event: 'started',
      listen: inbound?.address(),
      outbound: outbound.map((o, i) => ({
        listen: o.address(),
        remote:
          config.outbound[i].protocol === 'tcp' ? config.outbound[i].remote.href : config.outbound[i].remote.origin,
      })),
      admin: admin?.address(),
      upstream: upstreamLabel(config),
      auth: auth.mode,
      methods: config.inbound && !config.tcp ? acceptedMethods(config, apiKeysFile !== undefined) : undefined,
      transport: servesTls ? 'tls' : 'plain',
      source: source?.kind ?? 'none',
      spiffe_id: svid?.id.toString(),
      not_after: svid?.chain[0].notAfter.toISOString(),
      trust_domains: svid ? [...(identity as NonNullable<typeof identity>).current().bundles.keys()] : undefined,
    },
    'sidecar started',
  );
  const adminServer = admin;
  const jwtKeys = jwt;
  const close = () => teardown.closeAll();
  return {
    identity,
    address: () => {
      if (!inbound) throw new Error('no inbound listener (no --upstream)');
      return inbound.address();
    },
    outboundAddresses: () => outbound.map((o) => o.address()),
    adminAddress: () => {
      if (!adminServer) throw new Error('a worker has no admin listener (the primary serves it)');
      return adminServer.address();
    },
    async reload(trigger) {
      // Every file the sidecar reads, whatever --watch says; each logs its own outcome, this line the sum.
      const outcomes: { flag: string; outcome: ReloadOutcome }[] = [];
      if (policyFile) outcomes.push({ flag: policyFile.flag, outcome: await policyFile.reload(trigger) });
      if (apiKeysFile) outcomes.push({ flag: apiKeysFile.flag, outcome: await apiKeysFile.reload(trigger) });
      if (identity?.kind === 'file') {
        const { outcome } = await identity.reload(trigger);
        const flags = ['--mtls-cert-file', '--mtls-key-file', '--mtls-ca-file'];
        if (identity.options.federatedBundles.length > 0) flags.push('--federated-bundle');
        for (const flag of flags) outcomes.push({ flag, outcome });
      }
      if (jwtKeys) outcomes.push(...(await jwtKeys.reload(trigger)));
      const pushed = identity?.kind === 'workload_api';
      if (outcomes.length === 0) {
        log.info(
          { event: 'reload_ignored', trigger },
          pushed
            ? `${trigger}: nothing to re-read; the Workload API pushes the SVID and bundles itself`
            : `${trigger}: nothing to re-read`,
        );
        return;
      }
      const flagsWith = (outcome: ReloadOutcome) => outcomes.filter((o) => o.outcome === outcome).map((o) => o.flag);
      const changed = flagsWith('updated');
      const unchanged = flagsWith('unchanged');
      const failed = flagsWith('failed');
      const summary = [
        changed.length > 0 ? `changed: ${changed.join(', ')}` : undefined,
        unchanged.length > 0 ? `unchanged: ${unchanged.join(', ')}` : undefined,
        failed.length > 0 ? `failed, the last good kept: ${failed.join(', ')}` : undefined,
      ].filter((part) => part !== undefined);
      log.info(
        { event: 'reload_done', trigger, files: outcomes.map((o) => o.flag), changed, unchanged, failed },
        `${trigger}: re-read every file: ${summary.join('; ')}${pushed ? '; the Workload API pushes the SVID and bundles itself' : ''}`,
      );
    },
    async stop() {
      draining = true;
      log.info(
        { event: 'draining', timeout_ms: config.drainTimeoutMs },
        'draining: not ready, finishing in-flight requests',
      );
      await inbound?.drain(config.drainTimeoutMs);
      await close();
    },
    close,
  };
}
