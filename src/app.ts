// The composition root: builds the identity source (files or the Workload API), the policy and the
// inbound listener from a Config, and closes them in reverse order.
import { type AddressInfo, connect } from 'node:net';
import { createMetrics } from './admin/metrics.js';
import { AdminServer, type Readiness } from './admin/server.js';
import { createPolicy } from './authz/policy.js';
import { readFile } from 'node:fs/promises';
import { JwtAuthenticator, type JwksProvider, type OidcIssuer } from './authn/jwt.js';
import { createTokenReviewer } from './authn/token-review.js';
import type { AuthConfig, Config, IdentitySourceConfig } from './config.js';
import { SidecarError } from './errors.js';
import { type JwtBundleSource, JwtBundleFiles, WorkloadApiJwtBundles } from './identity/jwt-bundles.js';
import { RemoteJwks } from './identity/remote-jwks.js';
import { WorkloadApiClient } from './identity/workload-api-client.js';
import { DEFAULT_ISSUER_HEADER, DEFAULT_SUBJECT_HEADER } from './proxy/headers.js';
import { FileIdentitySource } from './identity/file-source.js';
import { type FileWatcher, watchIdentityFiles } from './identity/file-watcher.js';
import { WorkloadApiIdentitySource } from './identity/workload-api-source.js';
import type { Logger } from './log.js';
import { InboundProxy } from './proxy/inbound.js';

export interface Sidecar {
  /** Our X.509 identity; undefined in JWT mode over plain HTTP without an identity source. */
  readonly identity: FileIdentitySource | WorkloadApiIdentitySource | undefined;
  address(): AddressInfo;
  adminAddress(): AddressInfo;
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

export async function startSidecar(config: Config, log: Logger): Promise<Sidecar> {
  const { source, auth } = config;
  const policy = createPolicy({
    allow: config.allow,
    allowAny: config.allowAny,
    allowIssuers: auth.mode === 'jwt' ? auth.allowIssuers : [],
  });
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
  const servesTls = auth.mode === 'mtls' || auth.transport === 'tls';
  let jwt: Awaited<ReturnType<typeof openJwt>> | undefined;
  let admin: AdminServer | undefined;
  let inbound: InboundProxy;
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
    if (identity instanceof WorkloadApiIdentitySource && servesTls) {
      log.info(
        { event: 'waiting_for_identity', endpoint: identity.endpoint.address },
        'waiting for an SVID from the Workload API',
      );
      await identity.firstIdentity();
    }
    inbound = await InboundProxy.start({
      host: config.listen.host,
      port: config.listen.port,
      upstream: config.upstream,
      identity: servesTls ? identity : undefined,
      auth: jwt ? { mode: 'jwt', authenticator: jwt.authenticator } : { mode: 'mtls' },
      policy,
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
    await stopTriggers();
    await identity?.close();
    await jwt?.close();
    await admin?.close();
    throw err;
  }
  serving = true;
  const svid = identity && identity.status().reason !== 'waiting_for_svid' ? identity.current().svid : undefined;
  log.info(
    {
      event: 'started',
      listen: inbound.address(),
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
    await inbound.close();
    await identity?.close();
    await jwtKeys?.close();
    await adminServer.close();
  };
  return {
    identity,
    address: () => inbound.address(),
    adminAddress: () => adminServer.address(),
    async reload(trigger) {
      if (identity instanceof FileIdentitySource) await identity.reload(trigger);
      else log.info({ event: 'reload_ignored', trigger }, 'SPIRE mode: the Workload API pushes updates');
    },
    async stop() {
      draining = true;
      log.info(
        { event: 'draining', timeout_ms: config.drainTimeoutMs },
        'draining: not ready, finishing in-flight requests',
      );
      await inbound.drain(config.drainTimeoutMs);
      await close();
    },
    close,
  };
}
