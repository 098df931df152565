// The composition root: builds the identity source (files or the Workload API), the policy and the
// inbound listener from a Config, and closes them in reverse order.
import type { AddressInfo } from 'node:net';
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
  /** SIGHUP: re-reads the identity files (file mode); the Workload API pushes its own updates. */
  reload(trigger: string): Promise<void>;
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

/** SPIRE mode: the stream opens at once; serving waits for the first valid SVID (pod startup ordering). */
async function openWorkloadApiSource(
  source: IdentitySourceConfig & { kind: 'workload-api' },
  log: Logger,
): Promise<OpenedSource> {
  const identity = WorkloadApiIdentitySource.start({ endpoint: source.endpoint, hint: source.hint, log });
  log.info(
    { event: 'waiting_for_identity', endpoint: source.endpoint.address },
    'waiting for an SVID from the Workload API',
  );
  try {
    await identity.firstIdentity();
  } catch (err) {
    await identity.close();
    throw err;
  }
  return { identity, stopTriggers: async () => {} };
}

export async function startSidecar(config: Config, log: Logger): Promise<Sidecar> {
  const policy = createPolicy({ allow: config.allow, allowAny: config.allowAny });
  const { source } = config;
  const { identity, stopTriggers } =
    source.kind === 'files' ? await openFileSource(source, config, log) : await openWorkloadApiSource(source, log);
  let inbound: InboundProxy;
  try {
    inbound = await InboundProxy.start({
      host: config.listen.host,
      port: config.listen.port,
      upstream: config.upstream,
      identity,
      policy,
      headers: { identityHeaders: config.identityHeaders, xfcc: config.xfcc },
      log,
    });
  } catch (err) {
    await stopTriggers();
    await identity.close();
    throw err;
  }
  const svid = identity.current().svid;
  log.info(
    {
      event: 'started',
      listen: inbound.address(),
      upstream: config.upstream.origin,
      source: source.kind,
      spiffe_id: svid.id.toString(),
      not_after: svid.chain[0].notAfter.toISOString(),
      trust_domains: [...identity.current().bundles.keys()],
    },
    'sidecar started',
  );
  return {
    identity,
    address: () => inbound.address(),
    async reload(trigger) {
      if (identity instanceof FileIdentitySource) await identity.reload(trigger);
      else log.info({ event: 'reload_ignored', trigger }, 'SPIRE mode: the Workload API pushes updates');
    },
    async close() {
      await stopTriggers();
      await inbound.close();
      await identity.close();
    },
  };
}
