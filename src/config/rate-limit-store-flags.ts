// `--rate-limit-store` and the flags that go with it, checked before anything opens. The store URL names
// where (redis:// or rediss://, host, port, database, an optional ACL user); a password never travels in
// the URL (it would show in `ps`, in logs and in the pod spec): it comes from a file.
import { parseDuration } from '../duration.js';
import { SidecarError } from '../errors.js';
import type { RateLimitStoreConfig } from '../authz/open-shared-rate-limits.js';
import type { StoreFailureMode } from '../authz/shared-rate-limits.js';
import { RUN_DEFAULTS as DEFAULTS } from './defaults.js';

export type { RateLimitStoreConfig };

export interface RateLimitStoreFlags {
  'rate-limit-store'?: string;
  'rate-limit-store-password-file'?: string;
  'rate-limit-store-ca-file'?: string;
  'rate-limit-store-timeout'?: string;
  'rate-limit-store-failure'?: string;
  'rate-limit-replicas'?: string;
}

const FAILURE_MODES: readonly StoreFailureMode[] = ['local', 'allow', 'deny'];
const MAX_REPLICAS = 10_000;

function invalid(message: string): never {
  throw new SidecarError('ERR_CONFIG_INVALID', message);
}

const DEPENDENT_FLAGS = [
  'rate-limit-store-password-file',
  'rate-limit-store-ca-file',
  'rate-limit-store-timeout',
  'rate-limit-store-failure',
  'rate-limit-replicas',
] as const;

/** Undefined without `--rate-limit-store`; `hasPolicy`: rate limits are rules of a policy file. */
export function parseRateLimitStoreFlags(
  raw: RateLimitStoreFlags,
  hasPolicy: boolean,
): RateLimitStoreConfig | undefined {
  const text = raw['rate-limit-store'];
  if (text === undefined) {
    const stray = DEPENDENT_FLAGS.find((f) => raw[f] !== undefined);
    if (stray) invalid(`--${stray} needs --rate-limit-store redis://HOST:PORT`);
    return undefined;
  }
  if (!hasPolicy) invalid('--rate-limit-store needs --policy-file: rate limits are set per rule there (rate_limit:)');
  const hint =
    'write redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB] (a user may precede the host: redis://USER@HOST)';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // Not echoed: a mistyped URL may still carry a password.
    invalid(`--rate-limit-store: not a URL; ${hint}`);
  }
  // What errors may show of the URL: never its password.
  const shown = JSON.stringify(url.password === '' ? text : `${url.protocol}//${url.host}${url.pathname}`);
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    invalid(`--rate-limit-store ${shown}: the scheme must be redis: or rediss:; ${hint}`);
  if (url.password !== '')
    invalid(
      '--rate-limit-store: the URL carries a password, which would show in process listings and logs; put it in a file and give --rate-limit-store-password-file FILE',
    );
  if (url.hostname === '') invalid(`--rate-limit-store ${shown}: no host; ${hint}`);
  if (url.search !== '' || url.hash !== '')
    invalid(`--rate-limit-store ${shown}: no query or fragment is read; ${hint}`);
  const dbText = url.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,5}$/.test(dbText))
    invalid(`--rate-limit-store ${shown}: the path is the database number, e.g. /0`);
  const tls = url.protocol === 'rediss:';
  if (raw['rate-limit-store-ca-file'] !== undefined && !tls)
    invalid('--rate-limit-store-ca-file needs a rediss:// store: redis:// is plain TCP');
  const failure = (raw['rate-limit-store-failure'] ?? DEFAULTS['rate-limit-store-failure'].value) as StoreFailureMode;
  if (!FAILURE_MODES.includes(failure))
    invalid(
      `--rate-limit-store-failure ${JSON.stringify(failure)}: use local (per-replica buckets), allow or deny (503)`,
    );
  const replicasText = raw['rate-limit-replicas'] ?? DEFAULTS['rate-limit-replicas'].value;
  const replicas = Number(replicasText);
  if (!/^\d+$/.test(replicasText) || replicas < 1 || replicas > MAX_REPLICAS)
    invalid(
      `--rate-limit-replicas ${JSON.stringify(replicasText)}: give the number of sidecar replicas that share the store, 1 to ${MAX_REPLICAS}`,
    );
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port === '' ? 6379 : Number(url.port);
  return Object.freeze({
    host,
    port,
    db: dbText === '' ? 0 : Number(dbText),
    username: url.username === '' ? undefined : decodeURIComponent(url.username),
    tls,
    passwordFile: raw['rate-limit-store-password-file'],
    caFile: raw['rate-limit-store-ca-file'],
    timeoutMs: parseDuration(
      raw['rate-limit-store-timeout'] ?? DEFAULTS['rate-limit-store-timeout'].value,
      '--rate-limit-store-timeout',
    ),
    failure,
    replicas,
    name: `${url.protocol}//${url.host}/${dbText === '' ? 0 : Number(dbText)}`,
  });
}
