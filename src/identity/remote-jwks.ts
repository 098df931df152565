// An issuer's signing keys fetched over HTTPS: from a JWKS URL, or found by OIDC discovery
// (`<issuer>/.well-known/openid-configuration` → `jwks_uri`). Refreshed in the background; a token naming an
// unknown key triggers an early refresh at most once per cool-down (no key-miss storms); the last good
// keys are kept through an outage, and through an answer with no usable key (`{"keys":[]}`), which is a
// broken issuer, not a revocation. Errors are logged and counted, never thrown.
import { request } from 'node:https';
import { rootCertificates } from 'node:tls';
import type { JwksProvider } from './jwks-provider.js';
import { isSidecarError } from '../errors.js';
import type { Logger } from '../log.js';
import { ALLOWED_JWT_ALGS, type JWK, type JWKS } from '../spiffe/jwtsvid.js';
import { parseJwks } from './jwks.js';

/** Why a refresh kept the last keys: bounded, for the log and the metric label. */
export type JwksFetchFailure = 'unavailable' | 'invalid' | 'empty';

/** What a fetch did: new keys, the same keys, or none usable (the last keys kept). */
export type JwksFetchResult = 'updated' | 'unchanged' | 'failed';

export interface RemoteJwksOptions {
  name: string;
  /** The JWKS URL, or undefined to discover it from `issuer`. */
  jwksUrl?: string;
  issuer: string;
  /** Extra CA certificates (PEM) trusted for these fetches, besides the system roots. */
  extraCaPem?: string;
  log: Logger;
  refreshMs?: number;
  cooldownMs?: number;
  timeoutMs?: number;
  /** Told of every fetch when it ends, with its duration (discovery included): the metrics' observer. */
  onFetch?: (result: JwksFetchResult, seconds: number) => void;
}

const MAX_BODY_BYTES = 1024 * 1024;

/**
 * A key a token of this issuer could be verified with: a signing key (`use` absent or `sig`) with a kid
 * (tokens must name theirs), of a type and algorithm the verifier accepts.
 */
function isUsableKey(key: JWK): boolean {
  return (
    (key.kty === 'RSA' || key.kty === 'EC') &&
    (key.use === undefined || key.use === 'sig') &&
    typeof key.kid === 'string' &&
    key.kid.length > 0 &&
    (key.alg === undefined || ALLOWED_JWT_ALGS.includes(key.alg))
  );
}

/** The issuer answered, but with keys that cannot verify any token (`{"keys":[]}`). */
class NoUsableKey extends Error {
  constructor(
    message: string,
    readonly keys: number,
  ) {
    super(message);
  }
}

/** The issuer answered something that is not what OIDC discovery promises. */
class InvalidAnswer extends Error {}

function fetchJson(url: string, ca: string[], timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (!url.startsWith('https://')) return reject(new Error(`${url}: only https:// is allowed`));
    // One deadline for the whole fetch: an issuer that dribbles bytes cannot stall refreshes forever.
    const deadline = setTimeout(
      () => req.destroy(new Error(`${url}: no complete answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const req = request(url, { ca, headers: { accept: 'application/json' } }, (res) => {
      res.on('error', reject);
      res.on('aborted', () => reject(new Error(`${url}: answer aborted`)));
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`${url}: HTTP ${res.statusCode}`));
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) req.destroy(new Error(`${url}: larger than ${MAX_BODY_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch {
          reject(new Error(`${url}: not JSON`));
        }
      });
    });
    req.on('error', reject);
    req.on('close', () => clearTimeout(deadline));
    req.end();
  });
}

export class RemoteJwks implements JwksProvider {
  version = 0;
  private jwks: JWKS | undefined;
  private text: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastMissRefresh = Number.NEGATIVE_INFINITY;
  /** The refresh the last key miss started, while it runs. */
  private missRefresh: Promise<void> | undefined;
  private failures = 0;
  /** Refreshes that kept the last keys, by reason (the metric). */
  readonly failureCounts: Record<JwksFetchFailure, number> = { unavailable: 0, invalid: 0, empty: 0 };
  private fetching: Promise<void> | undefined;
  private closed = false;
  private readonly ca: string[];

  private constructor(private readonly options: RemoteJwksOptions) {
    this.ca = [...rootCertificates, ...(options.extraCaPem ? [options.extraCaPem] : [])];
  }

  /** Starts fetching; `firstLoad` settles after the first attempt, successful or not. */
  static start(options: RemoteJwksOptions): { jwks: RemoteJwks; firstLoad: Promise<void> } {
    const jwks = new RemoteJwks(options);
    return { jwks, firstLoad: jwks.refresh() };
  }

  current(): JWKS | undefined {
    return this.jwks;
  }

  /**
   * The first unknown kid refreshes at once, and the request that named it waits for that refresh (bounded by
   * the fetch deadline), so a rotation is picked up by its first token. Further misses within the cool-down do
   * not refresh (a flood of tokens with made-up kids cannot turn into a flood of fetches): they wait for the
   * refresh under way, if any, else not at all.
   */
  keyMissed(): Promise<void> {
    const now = Date.now();
    if (now - this.lastMissRefresh < (this.options.cooldownMs ?? 30_000)) return this.missRefresh ?? Promise.resolve();
    this.lastMissRefresh = now;
    const refresh = this.refresh().finally(() => {
      if (this.missRefresh === refresh) this.missRefresh = undefined;
    });
    this.missRefresh = refresh;
    return refresh;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  /** One fetch at a time; the next one is scheduled when it ends. */
  refresh(): Promise<void> {
    this.fetching ??= this.fetchOnce().finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  private async fetchOnce(): Promise<void> {
    const { log, name, timeoutMs = 5000, refreshMs = 300_000 } = this.options;
    const started = performance.now();
    let result: JwksFetchResult;
    try {
      let url = this.options.jwksUrl;
      if (!url) {
        const discovery = (await fetchJson(
          `${this.options.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
          this.ca,
          timeoutMs,
        )) as { jwks_uri?: unknown; issuer?: unknown };
        if (discovery.issuer !== this.options.issuer)
          throw new InvalidAnswer(`discovery names issuer ${JSON.stringify(discovery.issuer)}`);
        if (typeof discovery.jwks_uri !== 'string') throw new InvalidAnswer('discovery document has no jwks_uri');
        url = discovery.jwks_uri;
      }
      const jwks = parseJwks(await fetchJson(url, this.ca, timeoutMs), url);
      if (!jwks.keys.some(isUsableKey)) {
        throw new NoUsableKey(`${url}: no usable signing key among ${jwks.keys.length}`, jwks.keys.length);
      }
      const text = JSON.stringify(jwks);
      result = text === this.text ? 'unchanged' : 'updated';
      if (result === 'updated') {
        this.jwks = jwks;
        this.text = text;
        this.version++;
        log.info({ event: 'jwks_updated', issuer: name, keys: jwks.keys.length }, `keys of issuer "${name}" updated`);
      }
      this.failures = 0;
    } catch (err) {
      result = 'failed';
      this.failures++;
      const reason: JwksFetchFailure =
        err instanceof NoUsableKey
          ? 'empty'
          : isSidecarError(err) || err instanceof InvalidAnswer
            ? 'invalid'
            : 'unavailable';
      this.failureCounts[reason]++;
      log.warn(
        {
          event: 'jwks_fetch_failed',
          issuer: name,
          reason,
          stale: this.jwks !== undefined,
          ...(err instanceof NoUsableKey ? { keys: err.keys } : {}),
        },
        `fetching the keys of issuer "${name}" failed (${(err as Error).message})${this.jwks ? '; keeping the last keys' : ''}`,
      );
    }
    try {
      this.options.onFetch?.(result, (performance.now() - started) / 1000);
    } catch {
      // A metrics observer must not stop the refreshes.
    }
    if (this.closed) return;
    const delay = this.failures === 0 ? refreshMs : Math.min(refreshMs, 1000 * 2 ** Math.min(6, this.failures - 1));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), delay);
    this.timer.unref();
  }
}
