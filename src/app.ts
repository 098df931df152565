// The composition root: builds the identity source (files or the Workload API), the policy and the
// inbound listener from a Config, and closes them in reverse order.
import { type AddressInfo, connect } from 'node:net';
import { createMetrics } from './admin/metrics.js';
import { AdminServer, type Readiness } from './admin/server.js';
import { parseApiKeys } from './authn/api-keys.js';
import { createFileAuthorizer, createFlagAuthorizer } from './authz/policy.js';
import { parsePolicy } from './authz/policy-file.js';
import { ReloadingFile } from './reloading-file.js';
import { readFile } from 'node:fs/promises';
import { JwtAuthenticator, type JwksProvider, type OidcIssuer } from './authn/jwt.js';
import { createTokenReviewer } from './authn/token-review.js';
import type { AuthConfig, Config, IdentitySourceConfig, OutboundRouteConfig } from './config.js';
import { decodeJwt } from 'jose';
import { OutboundProxy, type OutboundRoute } from './proxy/outbound.js';
import { compileAllowRules } from './spiffe/match.js';
import { SidecarError } from './errors.js';
import { type JwtBundleSource, JwtBundleFiles, WorkloadApiJwtBundles } from './identity/jwt-bundles.js';
import { RemoteJwks } from './identity/remote-jwks.js';
import { WorkloadApiClient } from './identity/workload-api-client.js';
import { DEFAULT_ISSUER_HEADER, DEFAULT_SUBJECT_HEADER } from './proxy/headers.js';
import { FileIdentitySource } from './identity/file-source.js';
import { type FileWatcher, watchIdentityFiles } from './identity/file-watcher.js';
import type { IdentitySource } from './identity/source.js';
import { WorkloadApiIdentitySource } from './identity/workload-api-source.js';
import type { Logger } from './log.js';
import { InboundProxy } from './proxy/inbound.js';

export interface Sidecar {
  /** Our X.509 identity; undefined in JWT mode over plain HTTP without an identity source. */
  readonly identity: FileIdentitySource | WorkloadApiIdentitySource | undefined;
  address(): AddressInfo;
  adminAddress(): AddressInfo;
  /** The outbound routes' listen addresses, in --outbound order. */
  outboundAddresses(): AddressInfo[];
  /** SIGHUP: re-reads the identity files (file mode); the Workload API pushes its own updates. */
  reload(trigger: string): Promise<void>;
  /** SIGTERM: not ready, stop accepting, let in-flight requests finish (up to --drain-timeout), close. */
  stop(): Promise<void>;
  /** Close at once. */
  close(): Promise<void>;
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
function upstreamReachable(upstream: URL, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: upstream.hostname.replace(/^\[|\]$/g, ''), port: Number(upstream.port || 80) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** JWT mode: the authenticator and where its keys come from (files, the Workload API, issuers). */
async function openJwt(config: Config, auth: AuthConfig & { mode: 'jwt' }, log: Logger) {
  const closers: (() => Promise<void> | void)[] = [];
  let svid: JwtBundleSource | undefined;
  if (auth.bundleFiles.length > 0) {
    const files = await JwtBundleFiles.open(auth.bundleFiles, log);
    svid = files;
    if (config.watch) {
      const watcher = await watchIdentityFiles(
        auth.bundleFiles.map((f) => f.file),
        () => void files.reload('watch'),
        log,
      );
      closers.push(() => watcher.close());
    }
  } else if (config.source?.kind === 'workload-api') {
    const client = new WorkloadApiClient(config.source.endpoint);
    svid = new WorkloadApiJwtBundles(client, log);
    closers.push(() => client.close());
  }
  if (svid) closers.push(() => svid.close());
  const caPem = auth.caFile
    ? await readFile(auth.caFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new SidecarError('ERR_FILE_READ', `--jwt-ca-file ${auth.caFile}: cannot read the file (${err.code})`);
      })
    : undefined;
  const issuers: OidcIssuer[] = [];
  for (const issuer of auth.issuers) {
    let keys: JwksProvider;
    if (issuer.jwks?.file) {
      const file = await JwtBundleFiles.open([{ trustDomain: issuer.name, file: issuer.jwks.file }], log);
      if (config.watch) {
        const watcher = await watchIdentityFiles([issuer.jwks.file], () => void file.reload('watch'), log);
        closers.push(() => watcher.close());
      }
      // A key miss re-reads the file at most every 30 s: made-up kids must not become a read storm.
      let lastMiss = Number.NEGATIVE_INFINITY;
      keys = {
        current: () => file.current().get(issuer.name),
        version: 0,
        keyMissed: () => {
          if (Date.now() - lastMiss < 30_000) return;
          lastMiss = Date.now();
          void file.reload('key_miss');
        },
      };
    } else {
      const remote = RemoteJwks.start({
        name: issuer.name,
        issuer: issuer.issuer,
        jwksUrl: issuer.jwks?.url,
        extraCaPem: caPem,
        log,
      });
      await remote.firstLoad;
      closers.push(() => remote.jwks.close());
      keys = remote.jwks;
    }
    issuers.push({
      name: issuer.name,
      issuer: issuer.issuer,
      kind: issuer.kind,
      k8sTrustDomain: auth.k8sTrustDomain,
      keys,
    });
  }
  const review = auth.tokenReview;
  const authenticator = new JwtAuthenticator({
    audience: auth.audience,
    svidBundles: () => svid?.current(),
    issuers,
    tokenReview: review && {
      review: createTokenReviewer({ ...review, extraCaPem: caPem, audiences: auth.audience }),
      intervalMs: review.intervalMs,
    },
  });
  /** Ready when some key to verify tokens with has been loaded. */
  const hasKeys = () => (svid?.current()?.size ?? 0) > 0 || issuers.some((i) => i.keys.current() !== undefined);
  return {
    authenticator,
    hasKeys,
    close: async () => {
      for (const c of closers) await c();
    },
  };
}

/** An outbound route from its config: the remote's rule, and where a JWT route's token comes from. */
function outboundRoute(
  route: OutboundRouteConfig,
  config: Config,
  identity: IdentitySource | undefined,
  log: Logger,
  closers: (() => void)[],
): OutboundRoute {
  let token: (() => Promise<string | undefined>) | undefined;
  const source = config.source;
  if (route.auth === 'jwt' && route.tokenFile) {
    // A projected token file is rotated by the kubelet: re-read it, at most once a second.
    const file = route.tokenFile;
    let cached: { text: string | undefined; at: number } | undefined;
    token = async () => {
      if (!cached || Date.now() - cached.at > 1000) {
        const text = await readFile(file, 'utf8').then(
          (t) => t.trim() || undefined,
          () => undefined,
        );
        cached = { text, at: Date.now() };
      }
      return cached.text;
    };
  } else if (route.auth === 'jwt' && source?.kind === 'workload-api') {
    // A JWT-SVID for our own SPIFFE ID and this audience, kept until half of its lifetime has passed.
    const client = new WorkloadApiClient(source.endpoint);
    closers.push(() => client.close());
    const audience = route.audience as string;
    let cached: { token: string; refreshAt: number; expiresAt: number } | undefined;
    let inFlight: Promise<string | undefined> | undefined;
    const fetchToken = async (): Promise<string | undefined> => {
      const now = Date.now();
      const self = identity?.status().ready ? identity.current().svid.id.toString() : undefined;
      try {
        const svid = (await client.fetchJwtSvid([audience], self)).find((s) => !self || s.spiffe_id === self);
        if (!svid) throw new Error(`the Workload API returned no JWT-SVID${self ? ` for ${self}` : ''}`);
        const claims = decodeJwt(svid.svid);
        const aud = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
        if (claims.sub !== svid.spiffe_id || !aud.includes(audience))
          throw new Error('the JWT-SVID names another subject or audience');
        const exp = (claims.exp ?? 0) * 1000;
        if (exp <= now) throw new Error('the JWT-SVID has already expired');
        cached = { token: svid.svid, refreshAt: now + (exp - now) / 2, expiresAt: exp };
        return svid.svid;
      } catch (err) {
        log.warn({ event: 'jwt_svid_fetch_failed', audience }, (err as Error).message);
        return cached && now < cached.expiresAt ? cached.token : undefined;
      }
    };
    token = () => {
      if (cached && Date.now() < cached.refreshAt) return Promise.resolve(cached.token);
      // One fetch at a time: concurrent requests at refresh time share it.
      inFlight ??= fetchToken().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    };
  }
  return {
    host: route.host,
    port: route.port,
    remote: route.remote,
    expect: route.id === undefined ? undefined : compileAllowRules([route.id]),
    expectText: route.id,
    auth: route.auth,
    token,
    limits: config.limits,
  };
}

export async function startSidecar(config: Config, log: Logger): Promise<Sidecar> {
  const { source, auth } = config;
  // The policy and API key files come first: a broken one stops the start before anything listens.
  const policyFile = config.policy
    ? await ReloadingFile.open('--policy-file', config.policy.file, parsePolicy, log)
    : undefined;
  const apiKeysFile = config.apiKeysFile
    ? await ReloadingFile.open('--api-keys-file', config.apiKeysFile, parseApiKeys, log)
    : undefined;
  const authorizer = policyFile
    ? createFileAuthorizer(() => policyFile.current())
    : createFlagAuthorizer({
        allow: config.allow,
        allowAny: config.allowAny,
        allowIssuers: auth.mode === 'jwt' ? auth.allowIssuers : [],
      });
  const closeRuleFiles = async () => {
    await policyFile?.close();
    await apiKeysFile?.close();
  };
  if (config.watch) {
    await policyFile?.watch();
    await apiKeysFile?.watch();
  }
  // File mode fails right here on bad files; SPIRE mode opens its stream and waits below, with the
  // admin listener already up (alive, not ready) so that a startup probe can tell.
  const { identity, stopTriggers } =
    source === undefined
      ? { identity: undefined, stopTriggers: async () => {} }
      : source.kind === 'files'
        ? await openFileSource(source, config, log)
        : {
            identity: WorkloadApiIdentitySource.start({ endpoint: source.endpoint, hint: source.hint, log }),
            stopTriggers: async () => {},
          };
  const servesTls = config.inbound && (auth.mode === 'mtls' || auth.transport === 'tls');
  const outboundNeedsSvid = config.outbound.some((r) => r.remote.protocol === 'https:');
  let jwt: Awaited<ReturnType<typeof openJwt>> | undefined;
  let admin: AdminServer | undefined;
  let inbound: InboundProxy | undefined;
  const outbound: OutboundProxy[] = [];
  const outboundClosers: (() => void)[] = [];
  let draining = false;
  /** Ready only once the listener is bound, and not while draining. */
  let serving = false;
  try {
    jwt = auth.mode === 'jwt' ? await openJwt(config, auth, log) : undefined;
    /** Everything but the upstream probe: cheap enough for a metrics scrape. */
    const readyNow = (): Readiness => {
      const status = identity?.status();
      if (status && !status.ready && servesTls) return { ready: false, reason: status.reason };
      if (jwt && !jwt.hasKeys()) return { ready: false, reason: 'waiting_for_jwt_keys' };
      if (draining) return { ready: false, reason: 'draining' };
      if (!serving) return { ready: false, reason: 'starting' };
      return { ready: true };
    };
    const metrics = createMetrics(identity, jwt?.authenticator, () => readyNow().ready);
    const readiness = async (): Promise<Readiness> => {
      const now = readyNow();
      if (!now.ready) return now;
      if (config.readyRequiresUpstream && !(await upstreamReachable(config.upstream))) {
        return { ready: false, reason: 'upstream_unreachable' };
      }
      return { ready: true };
    };
    admin = await AdminServer.start({
      ...config.admin,
      registry: metrics.registry,
      identity,
      source: source?.kind ?? 'none',
      readiness,
    });
    if (identity instanceof WorkloadApiIdentitySource && (servesTls || outboundNeedsSvid)) {
      log.info(
        { event: 'waiting_for_identity', endpoint: identity.endpoint.address },
        'waiting for an SVID from the Workload API',
      );
      await identity.firstIdentity();
    }
    for (const route of config.outbound) {
      outbound.push(
        await OutboundProxy.start(outboundRoute(route, config, identity, log, outboundClosers), identity, log),
      );
    }
    inbound = !config.inbound
      ? undefined
      : await InboundProxy.start({
          host: config.listen.host,
          port: config.listen.port,
          upstream: config.upstream,
          identity: servesTls ? identity : undefined,
          auth: jwt ? { mode: 'jwt', authenticator: jwt.authenticator } : { mode: 'mtls' },
          authorizer,
          dryRun: config.policy?.dryRun,
          apiKeys: apiKeysFile ? () => apiKeysFile.current() : undefined,
          headers: {
            identityHeaders: config.identityHeaders,
            xfcc: config.xfcc,
            issuerHeader: auth.mode === 'jwt' ? auth.issuerHeader : DEFAULT_ISSUER_HEADER,
            subjectHeader: auth.mode === 'jwt' ? auth.subjectHeader : DEFAULT_SUBJECT_HEADER,
            stripAuthorization: auth.mode === 'jwt' && !auth.forwardToken,
          },
          log,
          limits: config.limits,
          metrics: metrics.proxy,
        });
  } catch (err) {
    for (const route of outbound) await route.close();
    await stopTriggers();
    await identity?.close();
    await jwt?.close();
    await admin?.close();
    await closeRuleFiles();
    throw err;
  }
  serving = true;
  const svid = identity && identity.status().reason !== 'waiting_for_svid' ? identity.current().svid : undefined;
  log.info(
    {
      event: 'started',
      listen: inbound?.address(),
      outbound: outbound.map((o, i) => ({ listen: o.address(), remote: config.outbound[i].remote.origin })),
      admin: admin.address(),
      upstream: config.upstream.origin,
      auth: auth.mode,
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
  const close = async () => {
    await stopTriggers();
    for (const route of outbound) await route.close();
    for (const closeClient of outboundClosers) closeClient();
    await inbound?.close();
    await identity?.close();
    await jwtKeys?.close();
    await adminServer.close();
    await closeRuleFiles();
  };
  return {
    identity,
    address: () => {
      if (!inbound) throw new Error('no inbound listener (no --upstream)');
      return inbound.address();
    },
    outboundAddresses: () => outbound.map((o) => o.address()),
    adminAddress: () => adminServer.address(),
    async reload(trigger) {
      await policyFile?.reload(trigger);
      await apiKeysFile?.reload(trigger);
      if (identity instanceof FileIdentitySource) await identity.reload(trigger);
      else log.info({ event: 'reload_ignored', trigger }, 'SPIRE mode: the Workload API pushes updates');
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
