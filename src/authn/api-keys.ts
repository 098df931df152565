// Static API keys (`--api-keys-file`), for callers that can hold neither an SVID nor a token: a script, a
// partner system. The file lists keys by SHA-256 only, one per line, each bound to an identity name:
//
//   sha256:<64 hex> <name> [created=<ISO time>] [expires=<ISO time>] [route=<METHOD|*>:<path glob>]...
//
// Removing a line revokes its key at the next reload. The key itself (`--api-key-prefix`, `sk_` by
// default, + 32 random bytes, base64url) is printed once by `spiffe-sidecar apikey new` and never stored.
// A bad line fails the whole file (ERR_API_KEYS_INVALID); a bad key is a returned rejection.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { compilePathPattern } from '../path-match.js';
import { SidecarError } from '../errors.js';
import { type ApiKeyEntry, type ApiKeyUsage, type UsageRecord, usageRecords } from './api-key-usage.js';
import { API_KEY_NAME_FORMAT, type KeyRoute, type PeerIdentity, type Rejection } from './identity.js';

/** The default `--api-key-prefix`. */
export const API_KEY_PREFIX = 'sk_';
/** The default `--api-key-header`. */
export const API_KEY_HEADER = 'x-api-key';
/** `--api-key-prefix` and `apikey new --prefix`: short enough to read, and always ending in `_`. */
const PREFIX_FORMAT = /^[a-z][a-z0-9]{0,15}_$/;
const METHOD_FORMAT = /^(\*|[A-Z]{1,20})$/;

/** How callers send a key: in `header`, or as `Authorization: Bearer <prefix>…` (`bearer` matches that). */
export interface ApiKeyFormat {
  readonly header: string;
  readonly prefix: string;
  readonly bearer: RegExp;
}

/** The format for a header (lower case) and a prefix that passed `isApiKeyPrefix`. */
export function apiKeyFormat(header: string, prefix: string): ApiKeyFormat {
  if (!PREFIX_FORMAT.test(prefix)) throw new Error(`not an API key prefix: ${JSON.stringify(prefix)}`);
  // The scheme is case-insensitive (RFC 9110 §11.1), and so is the prefix here: `bearer SK_…` is still
  // recognised as a key (and refused as unknown) rather than passed on as somebody else's token.
  return { header, prefix, bearer: new RegExp(`^Bearer (${prefix}\\S*)$`, 'i') };
}

export const DEFAULT_API_KEY_FORMAT: ApiKeyFormat = apiKeyFormat(API_KEY_HEADER, API_KEY_PREFIX);

/** Whether a prefix may start keys: 1-16 lower-case letters and digits (a letter first), then `_`. */
export function isApiKeyPrefix(prefix: string): boolean {
  return PREFIX_FORMAT.test(prefix);
}

interface KeyEntry {
  readonly digest: Buffer;
  readonly entry: ApiKeyEntry;
  readonly usage: UsageRecord;
  readonly expiresAt?: number;
  /** The answer to every successful authentication: made once per reload, not per request. */
  readonly admitted: ApiKeyResult & { ok: true };
}

export type ApiKeyResult =
  { ok: true; identity: PeerIdentity & { method: 'api-key' } } | { ok: false; rejection: Rejection };

export class ApiKeySet {
  private readonly format: RegExp;

  constructor(
    private readonly byDigest: ReadonlyMap<string, KeyEntry>,
    /** Keys start with this (`--api-key-prefix`); a key with another prefix is unknown. */
    readonly prefix: string = API_KEY_PREFIX,
  ) {
    if (!PREFIX_FORMAT.test(prefix)) throw new Error(`not an API key prefix: ${JSON.stringify(prefix)}`);
    this.format = new RegExp(`^${prefix}[A-Za-z0-9_-]{43}$`);
  }

  get size(): number {
    return this.byDigest.size;
  }

  /** The keys, in file order, for /api-keys and the key metrics. */
  entries(): ApiKeyEntry[] {
    return [...this.byDigest.values()].map((k) => k.entry);
  }

  /** A success records `now` as the key's last use: one number written; the answer itself was made at parse time. */
  authenticate(key: string, now: number): ApiKeyResult {
    if (!this.format.test(key))
      return reject('ERR_API_KEY_UNKNOWN', `the API key is not in the ${this.prefix}... format`);
    const digest = createHash('sha256').update(key).digest();
    // The map is keyed by the digest of what the caller sent: timing can tell an attacker at most
    // something about SHA-256 of its own guess, never about a stored key. The final comparison is
    // constant-time all the same.
    const entry = this.byDigest.get(digest.toString('hex'));
    if (!entry || !timingSafeEqual(entry.digest, digest)) return reject('ERR_API_KEY_UNKNOWN', 'unknown API key');
    if (entry.expiresAt !== undefined && now >= entry.expiresAt) {
      return reject('ERR_API_KEY_EXPIRED', `API key "${entry.entry.name}" expired`);
    }
    entry.usage.lastUsedAt = now;
    return entry.admitted;
  }
}

function reject(reason: 'ERR_API_KEY_UNKNOWN' | 'ERR_API_KEY_EXPIRED', message: string): ApiKeyResult {
  return { ok: false, rejection: { reason, message } };
}

export interface ParseApiKeysOptions {
  /** `--api-key-prefix` (default `sk_`). */
  readonly prefix?: string;
  /**
   * The process's last-use records: a key still listed keeps its record across reloads, a key no longer
   * listed is forgotten. Without it (`apikey new`) every key starts unused.
   */
  readonly usage?: ApiKeyUsage;
}

/** Parses the file; any bad line is an error naming the file, the line number and the fix. */
export function parseApiKeys(text: string, label: string, options: ParseApiKeysOptions = {}): ApiKeySet {
  const lines: { hex: string; name: string; createdAt?: number; expiresAt?: number; routes: KeyRoute[] }[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const bad = (why: string): never => {
      throw new SidecarError(
        'ERR_API_KEYS_INVALID',
        `${label} line ${i + 1}: ${why}; expected "sha256:<64 hex> <name> [created=<ISO time>] [expires=<ISO time>] [route=<METHOD>:<path>]..." as printed by 'spiffe-sidecar apikey new'`,
      );
    };
    const [hash, name, ...options] = line.split(/\s+/);
    const m = /^sha256:([0-9a-f]{64})$/.exec(hash);
    if (!m) bad('the first field must be sha256: and 64 lowercase hex digits');
    const hex = (m as RegExpExecArray)[1];
    if (seen.has(hex)) bad('the same key is listed twice');
    seen.add(hex);
    if (name === undefined || !API_KEY_NAME_FORMAT.test(name)) {
      bad('the name must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit');
    }
    let createdAt: number | undefined;
    let expiresAt: number | undefined;
    const routes: KeyRoute[] = [];
    for (const option of options) {
      const eq = option.indexOf('=');
      const [key, value] = eq === -1 ? [option, ''] : [option.slice(0, eq), option.slice(eq + 1)];
      if (key === 'expires') {
        if (expiresAt !== undefined) bad('expires is given twice');
        expiresAt = parseExpiry(value) ?? bad(`expires=${value} is not an ISO 8601 time such as 2027-01-31T00:00:00Z`);
      } else if (key === 'created') {
        if (createdAt !== undefined) bad('created is given twice');
        createdAt = parseExpiry(value) ?? bad(`created=${value} is not an ISO 8601 time such as 2026-05-01T10:00:00Z`);
      } else if (key === 'route') {
        const route = parseRoute(value);
        if (typeof route === 'string') bad(`route=${value}: ${route}`);
        routes.push(route as KeyRoute);
      } else {
        bad(`unknown field "${option}"`);
      }
    }
    lines.push({ hex, name: name as string, createdAt, expiresAt, routes });
  });
  // Only a file that parsed touches the records: a failed reload keeps the last good keys and their uses.
  const records = usageRecords(
    options.usage,
    lines.map((l) => l.hex),
  );
  const byDigest = new Map<string, KeyEntry>();
  for (const { hex, name, createdAt, expiresAt, routes } of lines) {
    const usage = records.get(hex) as UsageRecord;
    byDigest.set(hex, {
      digest: Buffer.from(hex, 'hex'),
      usage,
      ...(expiresAt !== undefined ? { expiresAt } : {}),
      entry: {
        id: hex.slice(0, 8),
        name,
        ...(createdAt !== undefined ? { createdAt } : {}),
        ...(expiresAt !== undefined ? { expiresAt } : {}),
        routes: routes.map((r) => r.text),
        usage,
      },
      admitted: {
        ok: true,
        identity: { method: 'api-key', name, ...(routes.length > 0 ? { routes } : {}) },
      },
    });
  }
  return new ApiKeySet(byDigest, options.prefix);
}

/** An ISO 8601 time with a date; a bare date means its start in UTC. */
export function parseExpiry(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})(T(\d{2}):(\d{2})(:(\d{2})(\.\d+)?)?(Z|[+-](\d{2}):(\d{2})))?$/.exec(text);
  if (!m) return undefined;
  // Date.parse rolls impossible dates over (February 30 becomes March 2): check the calendar first.
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth) return undefined;
  if (m[4] !== undefined) {
    const [hour, minute, second] = [Number(m[5]), Number(m[6]), Number(m[8] ?? 0)];
    if (hour > 23 || minute > 59 || second > 59) return undefined;
    if (m[11] !== undefined && (Number(m[11]) > 23 || Number(m[12]) > 59)) return undefined;
  }
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : undefined;
}

/** Whether a name may bind a key (it is one field of the line). */
export function isApiKeyName(name: string): boolean {
  return API_KEY_NAME_FORMAT.test(name);
}

/** `METHOD:GLOB`, e.g. `POST:/invoke` or `*:/status/**`; returns an error message when invalid. */
export function parseRoute(text: string): KeyRoute | string {
  const colon = text.indexOf(':');
  const method = text.slice(0, colon);
  const path = text.slice(colon + 1);
  if (colon === -1 || !METHOD_FORMAT.test(method)) return 'write METHOD:PATH, e.g. POST:/invoke or *:/status/**';
  const matches = compilePathPattern({ glob: path });
  if (typeof matches === 'string') return matches;
  return { method, text, matches };
}

/** Whether a key limited to routes may make this request (`path` in normal form). */
export function routeAllowed(routes: readonly KeyRoute[], method: string, path: string): boolean {
  return routes.some((r) => (r.method === '*' || r.method === method) && r.matches(path));
}

/**
 * The API key a request carries: in the format's header (`x-api-key` by default), or in
 * `Authorization: Bearer <prefix>...`; `from` says which (the header's name, or `authorization`).
 * Undefined when there is none; `ambiguous` when it carries several (the request is refused rather than
 * guessed at).
 */
export function presentedApiKey(
  headers: IncomingHttpHeaders,
  format: ApiKeyFormat = DEFAULT_API_KEY_FORMAT,
): { key: string; from: string } | 'ambiguous' | undefined {
  const header = headers[format.header];
  const bearer = format.bearer.exec(headers.authorization ?? '')?.[1];
  if (Array.isArray(header) || (header !== undefined && bearer !== undefined)) return 'ambiguous';
  if (header !== undefined) return { key: header.trim(), from: format.header };
  if (bearer !== undefined) return { key: bearer, from: 'authorization' };
  return undefined;
}

/** A fresh key (`prefix` + 32 random bytes, base64url) and its SHA-256 (for `apikey new`). */
export function newApiKey(prefix: string = API_KEY_PREFIX): { key: string; sha256: string } {
  const key = `${prefix}${randomBytes(32).toString('base64url')}`;
  return { key, sha256: createHash('sha256').update(key).digest('hex') };
}
