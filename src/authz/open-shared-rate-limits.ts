// Opens the shared rate-limit store a Config names: reads the password and CA files (an unreadable one
// stops the start, naming its flag), presents our current SVID on rediss:// (read at every reconnect, so
// a rotation applies), and starts connecting. It never waits for the store: until the store answers,
// `--rate-limit-store-failure` applies, so a Redis outage cannot keep the sidecar from starting.
import { isIP } from 'node:net';
import { readFlagFile } from '../flag-file.js';
import type { IdentitySource } from '../identity/source.js';
import type { Logger } from '../log.js';
import { SharedRateLimits, type StoreFailureMode } from './shared-rate-limits.js';

/** Where the store is and what to do when it cannot count (the config layer fills it from the flags). */
export interface RateLimitStoreConfig {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username: string | undefined;
  /** rediss://: TLS, with our SVID as the client certificate when we have one. */
  readonly tls: boolean;
  readonly passwordFile: string | undefined;
  /** rediss://: the CAs that sign the store's certificate (default: the system's). */
  readonly caFile: string | undefined;
  readonly timeoutMs: number;
  readonly failure: StoreFailureMode;
  /** `local` fallback: the limit is divided by replicas × workers. */
  readonly replicas: number;
  /** For log lines: the URL without credentials. */
  readonly name: string;
}

export async function openSharedRateLimits(
  config: RateLimitStoreConfig,
  workers: number,
  identity: IdentitySource | undefined,
  log: Logger,
): Promise<SharedRateLimits> {
  // A file ends with a newline more often than a password does.
  const password = config.passwordFile
    ? (await readFlagFile('--rate-limit-store-password-file', config.passwordFile)).replace(/\r?\n$/, '')
    : undefined;
  const ca = config.caFile ? await readFlagFile('--rate-limit-store-ca-file', config.caFile) : undefined;
  // SNI takes a host name only (RFC 6066 §3); without one Node checks the certificate against the IP address.
  const servername = isIP(config.host) === 0 ? config.host : undefined;
  const tls = config.tls
    ? () => {
        const svid = identity && identity.status().ready ? identity.current().svid : undefined;
        return { ca, servername, ...(svid ? { cert: svid.chainPem, key: svid.keyPem } : {}) };
      }
    : undefined;
  const { RedisRateStore } = await import('./redis-rate-store.js');
  const store = await RedisRateStore.open({
    host: config.host,
    port: config.port,
    db: config.db,
    username: config.username,
    password,
    tls,
    timeoutMs: config.timeoutMs,
  });
  // Our SPIFFE ID scopes the buckets (see SharedRateLimits' scope); kept current as the identity changes.
  let scope = '';
  const refresh = () => {
    if (identity && identity.status().reason !== 'waiting_for_svid') scope = identity.current().svid.id.toString();
  };
  refresh();
  identity?.onUpdate(refresh);
  return new SharedRateLimits({
    scope: () => scope,
    store,
    failure: config.failure,
    countingProcesses: config.replicas * workers,
    storeName: config.name,
    log,
  });
}
