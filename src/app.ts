// The composition root: builds the identity source, the policy and the inbound listener from a Config,
// and closes them in reverse order.
import type { AddressInfo } from 'node:net';
import { createPolicy } from './authz/policy.js';
import type { Config } from './config.js';
import { FileIdentitySource, type ReloadResult } from './identity/file-source.js';
import { type FileWatcher, watchIdentityFiles } from './identity/file-watcher.js';
import type { Logger } from './log.js';
import { InboundProxy } from './proxy/inbound.js';

export interface Sidecar {
  readonly identity: FileIdentitySource;
  address(): AddressInfo;
  /** Re-reads the identity files now (what SIGHUP does); keeps the last good identity on failure. */
  reload(trigger: string): Promise<ReloadResult>;
  close(): Promise<void>;
}

export async function startSidecar(config: Config, log: Logger): Promise<Sidecar> {
  const policy = createPolicy({ allow: config.allow, allowAny: config.allowAny });
  const identity = await FileIdentitySource.open(config.files, log);
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
    await identity.close();
    throw err;
  }
  const { files } = config;
  const watcher: FileWatcher | undefined = config.watch
    ? await watchIdentityFiles(
        [files.certFile, files.keyFile, files.caFile, ...files.federatedBundles.map((b) => b.file)],
        () => void identity.reload('watch'),
        log,
      )
    : undefined;
  const interval = config.reloadIntervalMs
    ? setInterval(() => void identity.reload('interval'), config.reloadIntervalMs).unref()
    : undefined;
  const svid = identity.current().svid;
  log.info(
    {
      event: 'started',
      listen: inbound.address(),
      upstream: config.upstream.origin,
      spiffe_id: svid.id.toString(),
      not_after: svid.chain[0].notAfter.toISOString(),
      trust_domains: [...identity.current().bundles.keys()],
    },
    'sidecar started',
  );
  return {
    identity,
    address: () => inbound.address(),
    reload: (trigger) => identity.reload(trigger),
    async close() {
      clearInterval(interval);
      await watcher?.close();
      await inbound.close();
      await identity.close();
    },
  };
}
