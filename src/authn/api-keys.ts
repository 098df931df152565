// Static API keys (`--api-keys-file`), for callers that can hold neither an SVID nor a token: a script, a
// partner system. The file lists keys by SHA-256 only, one per line, each bound to an identity name:
//
//   sha256:<64 hex> <name> [expires=<ISO 8601 time>] [route=<METHOD|*>:<path glob>]...
//
// Removing a line revokes its key at the next reload. The key itself (`sk_` + 32 random bytes,
// base64url) is printed once by `spiffe-sidecar apikey new` and never stored.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { compilePathPattern } from '../path-match.js';
import { SidecarError } from '../errors.js';
import type { KeyRoute, PeerIdentity, Rejection } from './identity.js';

export const API_KEY_PREFIX = 'sk_';
const KEY_FORMAT = /^sk_[A-Za-z0-9_-]{43}$/;
const NAME_FORMAT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const METHOD_FORMAT = /^(\*|[A-Z]{1,20})$/;

interface KeyEntry {
  readonly digest: Buffer;
  readonly name: string;
  readonly expiresAt?: number;
  readonly routes?: readonly KeyRoute[];
}

export type ApiKeyResult =
  { ok: true; identity: PeerIdentity & { method: 'api-key' } } | { ok: false; rejection: Rejection };

export class ApiKeySet {
  constructor(private readonly byDigest: ReadonlyMap<string, KeyEntry>) {}

  get size(): number {
    return this.byDigest.size;
  }

  authenticate(key: string, now: number): ApiKeyResult {
    if (!KEY_FORMAT.test(key)) return reject('ERR_API_KEY_UNKNOWN', 'the API key is not in the sk_... format');
    const digest = createHash('sha256').update(key).digest();
    // The map is keyed by the digest of what the caller sent: timing can tell an attacker at most
    // something about SHA-256 of its own guess, never about a stored key. The final comparison is
    // constant-time all the same.
    const entry = this.byDigest.get(digest.toString('hex'));
    if (!entry || !timingSafeEqual(entry.digest, digest)) return reject('ERR_API_KEY_UNKNOWN', 'unknown API key');
    if (entry.expiresAt !== undefined && now >= entry.expiresAt) {
      return reject('ERR_API_KEY_EXPIRED', `API key "${entry.name}" expired`);
    }
    return {
      ok: true,
      identity: { method: 'api-key', name: entry.name, ...(entry.routes ? { routes: entry.routes } : {}) },
    };
  }
}

function reject(reason: 'ERR_API_KEY_UNKNOWN' | 'ERR_API_KEY_EXPIRED', message: string): ApiKeyResult {
  return { ok: false, rejection: { reason, message } };
}

/** Parses the file; any bad line is an error naming the file, the line number and the fix. */
export function parseApiKeys(text: string, label: string): ApiKeySet {
  const byDigest = new Map<string, KeyEntry>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const bad = (why: string): never => {
      throw new SidecarError(
        'ERR_API_KEYS_INVALID',
        `${label} line ${i + 1}: ${why}; expected "sha256:<64 hex> <name> [expires=<ISO time>] [route=<METHOD>:<path>]..." as printed by 'spiffe-sidecar apikey new'`,
      );
    };
    const [hash, name, ...options] = line.split(/\s+/);
    const m = /^sha256:([0-9a-f]{64})$/.exec(hash);
    if (!m) bad('the first field must be sha256: and 64 lowercase hex digits');
    const hex = (m as RegExpExecArray)[1];
    if (byDigest.has(hex)) bad('the same key is listed twice');
    if (name === undefined || !NAME_FORMAT.test(name)) {
      bad('the name must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit');
    }
    let expiresAt: number | undefined;
    const routes: KeyRoute[] = [];
    for (const option of options) {
      const eq = option.indexOf('=');
      const [key, value] = eq === -1 ? [option, ''] : [option.slice(0, eq), option.slice(eq + 1)];
      if (key === 'expires') {
        if (expiresAt !== undefined) bad('expires is given twice');
        expiresAt = parseExpiry(value) ?? bad(`expires=${value} is not an ISO 8601 time such as 2027-01-31T00:00:00Z`);
      } else if (key === 'route') {
        const route = parseRoute(value);
        if (typeof route === 'string') bad(`route=${value}: ${route}`);
        routes.push(route as KeyRoute);
      } else {
        bad(`unknown field "${option}"`);
      }
    }
    byDigest.set(hex, {
      digest: Buffer.from(hex, 'hex'),
      name: name as string,
      ...(expiresAt !== undefined ? { expiresAt } : {}),
      ...(routes.length > 0 ? { routes } : {}),
    });
  });
  return new ApiKeySet(byDigest);
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
  return NAME_FORMAT.test(name);
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
 * The API key a request carries: `x-api-key`, or `Authorization: Bearer sk_...`. Undefined when there is
 * none; `ambiguous` when it carries several (the request is refused rather than guessed at).
 */
export function presentedApiKey(
  headers: IncomingHttpHeaders,
): { key: string; from: 'x-api-key' | 'authorization' } | 'ambiguous' | undefined {
  const header = headers['x-api-key'];
  // The scheme is case-insensitive (RFC 9110 §11.1): `bearer sk_...` is a key too.
  const bearer = /^Bearer (sk_\S*)$/i.exec(headers.authorization ?? '')?.[1];
  if (Array.isArray(header) || (header !== undefined && bearer !== undefined)) return 'ambiguous';
  if (header !== undefined) return { key: header.trim(), from: 'x-api-key' };
  if (bearer !== undefined) return { key: bearer, from: 'authorization' };
  return undefined;
}

/** A fresh key and the line that admits it (for `apikey new`). */
export function newApiKey(): { key: string; sha256: string } {
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { key, sha256: createHash('sha256').update(key).digest('hex') };
}
