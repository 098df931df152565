// API keys with a life story: a line may say when the key was created, the prefix and header are the
// operator's, every successful use is recorded in memory (kept across reloads while the key is listed,
// forgotten when it is not), and /api-keys reports each key by name and id, never by key or digest.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { apiKeyNew } from '../../src/authn/api-key-commands.js';
import {
  apiKeyCounts,
  apiKeysDocument,
  type ApiKeysDocument,
  mergeApiKeysDocuments,
  newApiKeyUsage,
} from '../../src/authn/api-key-usage.js';
import { apiKeyFormat, isApiKeyPrefix, newApiKey, parseApiKeys, presentedApiKey } from '../../src/authn/api-keys.js';
import { buildConfig } from '../../src/config.js';
import { SidecarError } from '../../src/errors.js';
import { apiKeysRefusal } from '../helpers/authz.js';
import { FILE_MODE } from '../helpers/config.js';

const LABEL = '--api-keys-file /etc/sidecar/keys';
const DAY = 86_400_000;
const T0 = Date.parse('2026-05-01T00:00:00Z');

function key(name: string, fields: string[] = [], prefix = 'gak_') {
  const { key: k, sha256 } = newApiKey(prefix);
  return { key: k, sha256, line: [`sha256:${sha256}`, name, ...fields].join(' ') };
}

const refusal = (text: string) => apiKeysRefusal(text, LABEL);

describe('created=', () => {
  it('is optional, parsed like expires=, and reported in UTC', () => {
    const a = key('a', ['created=2026-04-01T12:00:00+02:00']);
    const old = key('old');
    const set = parseApiKeys([a.line, old.line].join('\n'), LABEL, { prefix: 'gak_' });
    const doc = apiKeysDocument(set, newApiKeyUsage(T0), 30 * DAY, T0);
    expect(doc.keys.map((k) => [k.name, k.created_at])).toEqual([
      ['a', '2026-04-01T10:00:00.000Z'],
      ['old', null],
    ]);
  });

  it.each([
    ['twice', 'created=2026-01-01 created=2026-01-02', 'created is given twice'],
    ['in words', 'created=yesterday', 'created=yesterday is not an ISO 8601 time'],
    ['without a zone', 'created=2026-01-01T10:00:00', 'created=2026-01-01T10:00:00 is not an ISO 8601 time'],
  ])('a bad created= (%s) fails the file', (_what, field, why) => {
    const err = refusal(`sha256:${'a'.repeat(64)} a ${field}`);
    expect(err.code).toBe('ERR_API_KEYS_INVALID');
    expect(err.message).toContain(`${LABEL} line 1: ${why}`);
    expect(err.message).toContain('[created=<ISO time>]');
  });
});

describe('the prefix is the operator’s', () => {
  it('a set takes keys of its prefix only: another prefix is unknown, whatever the digest', () => {
    const gak = key('agent-a');
    const sk = key('agent-b', [], 'sk_');
    const set = parseApiKeys([gak.line, sk.line].join('\n'), LABEL, { prefix: 'gak_' });
    expect(set.prefix).toBe('gak_');
    expect(set.authenticate(gak.key, T0)).toMatchObject({ ok: true, identity: { name: 'agent-a' } });
    expect(set.authenticate(sk.key, T0)).toEqual({
      ok: false,
      rejection: { reason: 'ERR_API_KEY_UNKNOWN', message: 'the API key is not in the gak_... format' },
    });
    // And the default set (sk_) does not take gak_ keys.
    expect(parseApiKeys(gak.line, LABEL).authenticate(gak.key, T0)).toMatchObject({ ok: false });
  });

  it('--api-key-prefix and apikey new --prefix follow one rule', () => {
    const candidates = [
      'gak_',
      'sk_',
      'a_',
      'ab12_',
      `${'a'.repeat(16)}_`,
      `${'a'.repeat(17)}_`,
      'gak',
      'Gak_',
      '1a_',
      'g-k_',
      '_',
      '',
    ];
    for (const prefix of candidates) {
      let config = true;
      try {
        buildConfig({
          ...FILE_MODE,
          'policy-file': '/p.yaml',
          'api-keys-file': '/k.txt',
          'api-key-prefix': prefix,
        });
      } catch {
        config = false;
      }
      let command = true;
      try {
        apiKeyNew({ name: 'a', prefix }, T0);
      } catch {
        command = false;
      }
      expect({ prefix, config, command }).toEqual({ prefix, config: isApiKeyPrefix(prefix), command: config });
    }
  });
});

describe('apikey new --prefix', () => {
  it('prints a <prefix><43 base64url> key and a line with created=, and says which flag the sidecar needs', () => {
    const out = apiKeyNew({ name: 'agent-a', prefix: 'gak_', route: ['*:/agents/a/**'] }, T0 + 1750);
    const printed = /^key: {2}(\S+)$/m.exec(out)?.[1] as string;
    const line = /^line: (.+)$/m.exec(out)?.[1] as string;
    expect(printed).toMatch(/^gak_[A-Za-z0-9_-]{43}$/);
    expect(line).toBe(
      `sha256:${createHash('sha256').update(printed).digest('hex')} agent-a created=2026-05-01T00:00:01Z route=*:/agents/a/**`,
    );
    expect(out).toContain('--api-key-prefix gak_');
    expect(parseApiKeys(line, LABEL, { prefix: 'gak_' }).authenticate(printed, T0 + 2000).ok).toBe(true);
  });

  it('the default prefix needs no flag', () => {
    const out = apiKeyNew({ name: 'a' }, T0);
    expect(out).toMatch(/^key: {2}sk_/m);
    expect(out).not.toContain('--api-key-prefix');
  });

  it.each(['GAK_', 'gak', 'g-k_', '', `${'a'.repeat(17)}_`])('refuses --prefix %j naming the flag', (prefix) => {
    expect(() => apiKeyNew({ name: 'a', prefix }, T0)).toThrow(/^apikey new: --prefix .*: 1-16 lower-case/);
  });
});

describe('where a request carries its key, with another header and prefix', () => {
  const format = apiKeyFormat('x-gofannon-key', 'gak_');
  const k = newApiKey('gak_').key;
  const sk = newApiKey().key;
  const cases: [what: string, headers: Record<string, string | string[]>, expected: unknown][] = [
    ['the configured header', { 'x-gofannon-key': k }, { key: k, from: 'x-gofannon-key' }],
    ['Authorization: Bearer gak_…', { authorization: `Bearer ${k}` }, { key: k, from: 'authorization' }],
    [
      'bearer GAK_… (any case: still a key, refused as unknown)',
      { authorization: `bearer GAK_x` },
      { key: 'GAK_x', from: 'authorization' },
    ],
    ['x-api-key is not the header here', { 'x-api-key': k }, undefined],
    ['an sk_ bearer is not a key here', { authorization: `Bearer ${sk}` }, undefined],
    ['the header and a bearer key', { 'x-gofannon-key': k, authorization: `Bearer ${k}` }, 'ambiguous'],
    ['the header twice', { 'x-gofannon-key': [k, k] }, 'ambiguous'],
  ];
  it.each(cases)('%s', (_what, headers, expected) => {
    expect(presentedApiKey(headers, format)).toEqual(expected);
  });
});

describe('last use', () => {
  it('a successful authentication records its time; a refused one does not', () => {
    const live = key('live');
    const lapsed = key('lapsed', ['expires=2026-05-02T00:00:00Z']);
    const usage = newApiKeyUsage(T0);
    const set = parseApiKeys([live.line, lapsed.line].join('\n'), LABEL, { prefix: 'gak_', usage });
    const lastUsed = () => apiKeysDocument(set, usage, 30 * DAY, T0 + 5 * DAY).keys.map((k) => k.last_used_at);
    expect(lastUsed()).toEqual([null, null]);
    expect(set.authenticate(live.key, T0 + DAY).ok).toBe(true);
    expect(set.authenticate(lapsed.key, T0 + 2 * DAY).ok).toBe(false);
    expect(set.authenticate(newApiKey('gak_').key, T0 + 2 * DAY).ok).toBe(false);
    expect(lastUsed()).toEqual(['2026-05-02T00:00:00.000Z', null]);
  });

  it('costs no allocation: every success returns the same answer, made at parse time', () => {
    const k = key('a', ['route=GET:/x']);
    const set = parseApiKeys(k.line, LABEL, { prefix: 'gak_' });
    expect(set.authenticate(k.key, 1)).toBe(set.authenticate(k.key, 2));
  });

  it('survives a reload for a key still listed, is forgotten when the key is removed, and a failed reload changes nothing', () => {
    const a = key('a');
    const b = key('b');
    const usage = newApiKeyUsage(T0);
    const parse = (...lines: string[]) => parseApiKeys(lines.join('\n'), LABEL, { prefix: 'gak_', usage });
    const first = parse(a.line, b.line);
    first.authenticate(a.key, T0 + 1000);
    first.authenticate(b.key, T0 + 2000);
    // b removed, c added.
    const c = key('c');
    const second = parse(a.line, c.line);
    expect(usage.records.size).toBe(2);
    // A request that authenticated against the set in force a moment ago still counts.
    first.authenticate(a.key, T0 + 3000);
    const doc = (set: typeof first) =>
      apiKeysDocument(set, usage, DAY, T0 + 4000).keys.map((k) => [k.name, k.last_used_at]);
    expect(doc(second)).toEqual([
      ['a', '2026-05-01T00:00:03.000Z'],
      ['c', null],
    ]);
    expect(() => parse(a.line, 'sha256:nope b')).toThrow(SidecarError);
    expect(usage.records.size).toBe(2);
    // b listed again: a new key as far as its story goes.
    expect(doc(parse(a.line, b.line, c.line))).toEqual([
      ['a', '2026-05-01T00:00:03.000Z'],
      ['b', null],
      ['c', null],
    ]);
  });
});

describe('the /api-keys document', () => {
  const made = key('agent-a', ['created=2026-04-01T00:00:00Z', 'expires=2026-06-01T00:00:00Z', 'route=*:/agents/a/**']);
  const fresh = key('fresh', ['created=2026-05-20T00:00:00Z']);
  const legacy = key('legacy');

  it('names each key by name and the first 8 hex of its digest, never the key or the digest', () => {
    const usage = newApiKeyUsage(T0);
    const set = parseApiKeys(made.line, LABEL, { prefix: 'gak_', usage });
    set.authenticate(made.key, T0 + DAY);
    const doc = apiKeysDocument(set, usage, 30 * DAY, T0 + 2 * DAY);
    expect(doc).toEqual({
      since: '2026-05-01T00:00:00.000Z',
      unused_after_seconds: 30 * 86_400,
      keys: [
        {
          name: 'agent-a',
          id: made.sha256.slice(0, 8),
          created_at: '2026-04-01T00:00:00.000Z',
          expires_at: '2026-06-01T00:00:00.000Z',
          last_used_at: '2026-05-02T00:00:00.000Z',
          routes: ['*:/agents/a/**'],
          expired: false,
          unused: false,
        },
      ],
    });
    const text = JSON.stringify(doc);
    expect(text).not.toContain(made.key.slice(4));
    expect(text).not.toContain(made.sha256.slice(0, 9));
  });

  it('unused counts from the latest of the last use, created= and the process start', () => {
    const usage = newApiKeyUsage(T0);
    const set = parseApiKeys([made.line, fresh.line, legacy.line].join('\n'), LABEL, { prefix: 'gak_', usage });
    const unused = (now: number) =>
      apiKeysDocument(set, usage, 30 * DAY, now).keys.map((k) => [k.name, k.unused, k.expired]);
    // Made a month before the process started: not unused until the process has run 30 days.
    expect(unused(T0 + 30 * DAY - 1)).toEqual([
      ['agent-a', false, false],
      ['fresh', false, false],
      ['legacy', false, false],
    ]);
    expect(unused(T0 + 30 * DAY)).toEqual([
      ['agent-a', true, false],
      ['fresh', false, false],
      ['legacy', true, false],
    ]);
    // Made after the start: 30 days from created=. Used: 30 days from its use. Expired: still listed.
    set.authenticate(legacy.key, T0 + 40 * DAY);
    expect(unused(T0 + 48 * DAY)).toEqual([
      ['agent-a', true, true],
      ['fresh', false, false],
      ['legacy', false, false],
    ]);
    expect(unused(T0 + 49 * DAY)).toEqual([
      ['agent-a', true, true],
      ['fresh', true, false],
      ['legacy', false, false],
    ]);
    expect(apiKeyCounts(apiKeysDocument(set, usage, 30 * DAY, T0 + 49 * DAY))).toEqual({ listed: 3, unused: 2 });
  });
});

describe('--workers: the workers’ documents as one', () => {
  const entry = (name: string, lastUsed: string | null, unused: boolean) => ({
    name,
    id: name.padEnd(8, '0'),
    created_at: null,
    expires_at: null,
    last_used_at: lastUsed,
    routes: [],
    expired: false,
    unused,
  });
  const doc = (since: string, ...keys: ReturnType<typeof entry>[]): ApiKeysDocument => ({
    since,
    unused_after_seconds: 60,
    keys,
  });

  it('a key was last used when any worker saw it; unused only if every worker says so', () => {
    const merged = mergeApiKeysDocuments([
      doc('2026-05-01T00:00:00.000Z', entry('a', '2026-05-02T00:00:00.000Z', false), entry('b', null, true)),
      doc('2026-05-03T00:00:00.000Z', entry('a', null, false), entry('b', null, false), entry('c', null, true)),
      doc('2026-05-01T00:00:00.000Z', entry('a', '2026-05-04T00:00:00.000Z', false), entry('b', null, true)),
    ]);
    expect(merged).toEqual(
      doc(
        '2026-05-03T00:00:00.000Z',
        entry('a', '2026-05-04T00:00:00.000Z', false),
        entry('b', null, false),
        entry('c', null, true),
      ),
    );
    expect(apiKeyCounts(merged)).toEqual({ listed: 3, unused: 1 });
  });
});
