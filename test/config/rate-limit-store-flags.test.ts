// --rate-limit-store and its flags: what a store URL may say (redis:// or rediss://, host, port, database,
// a user, never a password), the failure modes, the replica count, and that each mistake is refused with
// the flag named and the fix.
import { describe, expect, it } from 'vitest';
import { buildConfig, type RawOptions } from '../../src/config.js';
import { configRefusal, FILE_MODE } from '../helpers/config.js';

const BASE: RawOptions = { ...FILE_MODE, 'policy-file': '/etc/policy.yaml' };

const refusal = (options: RawOptions) => configRefusal({ ...BASE, ...options });

describe('--rate-limit-store flags', () => {
  it('without a store, rate limits count per process and no store is configured', () => {
    expect(buildConfig(BASE).rateLimitStore).toBeUndefined();
  });

  it('redis:// with the defaults: port 6379, database 0, timeout 50 ms, local fallback, one replica', () => {
    expect(buildConfig({ ...BASE, 'rate-limit-store': 'redis://redis.infra' }).rateLimitStore).toEqual({
      host: 'redis.infra',
      port: 6379,
      db: 0,
      username: undefined,
      tls: false,
      passwordFile: undefined,
      caFile: undefined,
      timeoutMs: 50,
      failure: 'local',
      replicas: 1,
      name: 'redis://redis.infra/0',
    });
  });

  it('rediss:// with a user, a database, an IPv6 host and every flag set', () => {
    const config = buildConfig({
      ...BASE,
      'rate-limit-store': 'rediss://limits@[::1]:6380/3',
      'rate-limit-store-password-file': '/run/secrets/redis',
      'rate-limit-store-ca-file': '/etc/redis-ca.pem',
      'rate-limit-store-timeout': '20ms',
      'rate-limit-store-failure': 'deny',
      'rate-limit-replicas': '10',
    }).rateLimitStore;
    expect(config).toMatchObject({
      host: '::1',
      port: 6380,
      db: 3,
      username: 'limits',
      tls: true,
      passwordFile: '/run/secrets/redis',
      caFile: '/etc/redis-ca.pem',
      timeoutMs: 20,
      failure: 'deny',
      replicas: 10,
    });
    // The name logged carries no credentials.
    expect(config?.name).toBe('rediss://[::1]:6380/3');
  });

  it.each([
    [{ 'rate-limit-store': 'http://redis:6379' }, /--rate-limit-store .*scheme must be redis: or rediss:/],
    [{ 'rate-limit-store': 'redis-host:6379' }, /scheme must be redis: or rediss:/],
    [{ 'rate-limit-store': 'not a url' }, /--rate-limit-store: not a URL/],
    [{ 'rate-limit-store': 'redis://:hunter2@redis:6379' }, /carries a password.*--rate-limit-store-password-file/],
    [{ 'rate-limit-store': 'redis://user:hunter2@redis:6379' }, /carries a password/],
    [{ 'rate-limit-store': 'http://user:hunter2@redis:6379' }, /scheme must be redis: or rediss:/],
    [{ 'rate-limit-store': 'redis://user:hunter2@redis:99999' }, /not a URL/],
    [{ 'rate-limit-store': 'redis://redis:6379/db1' }, /the path is the database number/],
    [{ 'rate-limit-store': 'redis://redis:6379/0?timeout=1' }, /no query or fragment/],
    [{ 'rate-limit-store': 'redis://redis', 'rate-limit-store-failure': 'open' }, /use local .*allow or deny/],
    [{ 'rate-limit-store': 'redis://redis', 'rate-limit-replicas': '0' }, /--rate-limit-replicas "0"/],
    [{ 'rate-limit-store': 'redis://redis', 'rate-limit-replicas': '2.5' }, /--rate-limit-replicas "2.5"/],
    [{ 'rate-limit-store': 'redis://redis', 'rate-limit-store-timeout': '0ms' }, /--rate-limit-store-timeout/],
    [{ 'rate-limit-store': 'redis://redis', 'rate-limit-store-ca-file': '/ca.pem' }, /needs a rediss:\/\/ store/],
    [{ 'rate-limit-store-failure': 'deny' }, /--rate-limit-store-failure needs --rate-limit-store/],
    [{ 'rate-limit-replicas': '3' }, /--rate-limit-replicas needs --rate-limit-store/],
  ] as [RawOptions, RegExp][])('%o is refused, naming the flag and the fix', (options, message) => {
    const err = refusal(options);
    expect(err.code).toBe('ERR_CONFIG_INVALID');
    expect(err.message).toMatch(message);
    // A password never appears in an error either.
    expect(err.message).not.toContain('hunter2');
  });

  it('needs a policy file: rate limits are rules there', () => {
    const err = refusal({
      'policy-file': undefined,
      'allow-any': true,
      'rate-limit-store': 'redis://r',
    });
    expect(err.message).toMatch(/--rate-limit-store needs --policy-file/);
  });
});
