// The composition root: builds the identity source (files or the Workload API), the policy and the
// inbound listener from a Config, and closes them in reverse order.
import { type AddressInfo, connect } from 'node:net';
import { createMetrics } from './admin/metrics.js';
import { AdminServer, type Readiness } from './admin/server.js';
import { createPolicy } from './authz/policy.js';
import type { Config, IdentitySourceConfig } from './config.js';
import { FileIdentitySource } from './identity/file-source.js';
import { type FileWatcher, watchIdentityFiles } from './identity/file-watcher.js';
import { WorkloadApiIdentitySource } from './identity/workload-api-source.js';
import type { Logger } from './log.js';
import { InboundProxy } from './proxy/inbound.js';

export interface Sidecar {
  readonly identity: FileIdentitySource | WorkloadApiIdentitySource;
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

export async function startSidecar(config: Config, log: Logger): Promise<Sidecar> {
  const policy = createPolicy({ allow: config.allow, allowAny: config.allowAny });
  const { source } = config;
  // File mode fails right here on bad files; SPIRE mode opens its stream and waits below, with the
  // admin listener already up (alive, not ready) so that a startup probe can tell.
  const { identity, stopTriggers } =
    source.kind === 'files'
      ? await openFileSource(source, config, log)
      : {
          identity: WorkloadApiIdentitySource.start({ endpoint: source.endpoint, hint: source.hint, log }),
          stopTriggers: async () => {},
        };
  const metrics = createMetrics(identity);
  let draining = false;
  const readiness = async (): Promise<Readiness> => {
    const status = identity.status();
    if (!status.ready) return { ready: false, reason: status.reason };
    if (draining) return { ready: false, reason: 'draining' };
    if (config.readyRequiresUpstream && !(await upstreamReachable(config.upstream))) {
      return { ready: false, reason: 'upstream_unreachable' };
    }
    return { ready: true };
  };
  let admin: AdminServer | undefined;
  let inbound: InboundProxy;
  try {
    admin = await AdminServer.start({
      ...config.admin,
      registry: metrics.registry,
      identity,
      source: source.kind,
      readiness,
    });
    if (identity instanceof WorkloadApiIdentitySource) {
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
      identity,
      policy,
      headers: { identityHeaders: config.identityHeaders, xfcc: config.xfcc },
      log,
      limits: config.limits,
      metrics: metrics.proxy,
    });
  } catch (err) {
    await stopTriggers();
    await identity.close();
    await admin?.close();
    throw err;
  }
  const svid = identity.current().svid;
  log.info(
    {
      event: 'started',
      listen: inbound.address(),
      admin: admin.address(),
      upstream: config.upstream.origin,
      source: source.kind,
      spiffe_id: svid.id.toString(),
      not_after: svid.chain[0].notAfter.toISOString(),
      trust_domains: [...identity.current().bundles.keys()],
    },
    'sidecar started',
  );
  const adminServer = admin;
  const close = async () => {
    await stopTriggers();
    await inbound.close();
    await identity.close();
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
