// The composition root: builds the identity source, the policy and the inbound listener from a Config,
// and closes them in reverse order.
import type { AddressInfo } from 'node:net';
import { createPolicy } from './authz/policy.js';
import type { Config } from './config.js';
import { FileIdentitySource } from './identity/file-source.js';
import type { IdentitySource } from './identity/source.js';
import type { Logger } from './log.js';
import { InboundProxy } from './proxy/inbound.js';

export interface Sidecar {
  readonly identity: IdentitySource;
  address(): AddressInfo;
  close(): Promise<void>;
}

export async function startSidecar(config: Config, log: Logger): Promise<Sidecar> {
  const policy = createPolicy({ allow: config.allow, allowAny: config.allowAny });
  const identity = await FileIdentitySource.open(config.files);
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
    async close() {
      await inbound.close();
      await identity.close();
    },
  };
}
