// Token buckets in Redis, shared by every replica and worker that points at the same store
// (`--rate-limit-store redis://…`). One decision is one round trip: a Lua script (EVALSHA, loaded once per
// connection) runs the same bucket as the local RateLimiter, as GCRA: the key holds the theoretical
// arrival time of the next request, so one small string per caller and rule, expiring when the bucket
// is full again. The clock is the store's (TIME), so replicas whose clocks disagree still count alike.
//
// Why a script of ours and not rate-limiter-flexible's RateLimiterRedis: that one counts fixed windows of
// whole seconds, which lets up to twice the limit through across a window edge and has no burst; a policy
// must mean the same thing whether it counts locally or in the store. The cost is the same single
// EVALSHA round trip (bench: `sidecar-mtls-rate-limit-store`).
//
// ioredis is loaded only when a store is configured: it is not part of any other mode's startup.
import { constants } from 'node:crypto';
import type { Redis, RedisOptions } from 'ioredis';
import type { Admission, RateLimit } from './rate-limiter.js';

/** KEYS[1]: the bucket. ARGV[1]: ms between requests (per / requests). ARGV[2]: burst. Returns ms to wait (0: admitted). */
const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2]) * interval
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = math.max(tonumber(stored), now)
end
local next_tat = tat + interval
if next_tat - now > tolerance then
  return math.max(1, math.ceil(next_tat - now - tolerance))
end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
return 0
`;

/** Where the store is and how to reach it; `tls` is read at every (re)connect (a rotated SVID applies). */
export interface RedisStoreOptions {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: () => { ca?: string; cert?: string; key?: string; servername?: string };
  /** No decision waits longer than this on the store. */
  timeoutMs: number;
}

type ScriptedRedis = Redis & { sidecarTake(key: string, intervalMs: string, burst: string): Promise<number> };

/** The longest pause between reconnection attempts: a store that comes back is used within this. */
const MAX_RECONNECT_DELAY_MS = 1000;

export class RedisRateStore {
  private constructor(private readonly client: ScriptedRedis) {}

  /** Starts connecting (it does not wait for the store: until it is up, `take` fails at once). */
  static async open(options: RedisStoreOptions): Promise<RedisRateStore> {
    const { Redis: RedisClient } = await import('ioredis');
    const tls = options.tls;
    const redisOptions: RedisOptions = {
      host: options.host,
      port: options.port,
      db: options.db,
      username: options.username,
      password: options.password,
      // A request never queues behind a broken connection: while not connected, a command fails at once.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.timeoutMs,
      connectTimeout: Math.max(1000, options.timeoutMs),
      retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
      // ioredis copies `tls` into tls.connect's options at every connect: the getters read the SVID then.
      ...(tls
        ? {
            tls: {
              get ca() {
                return tls().ca;
              },
              get cert() {
                return tls().cert;
              },
              get key() {
                return tls().key;
              },
              get servername() {
                return tls().servername;
              },
              minVersion: 'TLSv1.2',
              // As on every connection we make (verified-connect.ts): the server's certificate is judged once.
              secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
            },
          }
        : {}),
    };
    const client = new RedisClient(redisOptions) as ScriptedRedis;
    client.defineCommand('sidecarTake', { numberOfKeys: 1, lua: TAKE_SCRIPT });
    return new RedisRateStore(client);
  }

  /** One request against `key`'s bucket; rejects on a store error or past the timeout. */
  async take(key: string, limit: RateLimit): Promise<Admission> {
    const waitMs: unknown = await this.client.sidecarTake(
      key,
      String(limit.perMs / limit.requests),
      String(limit.burst),
    );
    // Anything but the script's answer (a proxy, another program on the port) is a store error, not a verdict.
    if (typeof waitMs !== 'number' || !Number.isInteger(waitMs) || waitMs < 0)
      throw new Error(`the store answered ${JSON.stringify(waitMs)?.slice(0, 40)} instead of a wait in ms`);
    return waitMs === 0 ? { ok: true } : { ok: false, retryAfterMs: waitMs };
  }

  /** Whether the store answers now (within the timeout). */
  async probe(): Promise<void> {
    await this.client.ping();
  }

  /** Called each time a connection is (re)established and usable. */
  onReady(listener: () => void): void {
    this.client.on('ready', listener);
  }

  /** Connection errors (refused, reset, auth, TLS): the client keeps reconnecting on its own. */
  onError(listener: (err: Error) => void): void {
    this.client.on('error', listener);
  }

  async close(): Promise<void> {
    this.client.disconnect(false);
  }
}
