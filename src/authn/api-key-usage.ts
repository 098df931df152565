// When each API key last authenticated, kept in memory per process (a restart forgets; with --workers each
// worker keeps its own and the primary merges them), and the report made of it: /api-keys and the key
// gauges. Nothing here fails: a key not used since the process started reads as null.
/** One key's last use: written by every successful authentication, so a number and nothing more. */
export interface UsageRecord {
  /** Milliseconds since the epoch; 0 when not used since the process started. */
  lastUsedAt: number;
}

/** The process's records, by key digest (hex). */
export interface ApiKeyUsage {
  /** When this process started keeping them: a key is unused only if it has been listed this long. */
  readonly since: number;
  readonly records: Map<string, UsageRecord>;
}

export function newApiKeyUsage(since: number): ApiKeyUsage {
  return { since, records: new Map() };
}

/**
 * The records for the keys of a file that parsed, by digest: a key still listed keeps its record (the same
 * object, so a request that authenticated against the previous set still counts), a new key gets a fresh
 * one, and a key no longer listed is forgotten (listed again, it starts unused).
 */
export function usageRecords(usage: ApiKeyUsage | undefined, digests: readonly string[]): Map<string, UsageRecord> {
  const records = new Map<string, UsageRecord>();
  for (const hex of digests) records.set(hex, usage?.records.get(hex) ?? { lastUsedAt: 0 });
  if (usage) {
    usage.records.clear();
    for (const [hex, record] of records) usage.records.set(hex, record);
  }
  return records;
}

/** One line of the keys file, as the report reads it (api-keys.ts makes them; never the digest or the key). */
export interface ApiKeyEntry {
  /** The first 8 hex digits of the key's SHA-256: enough to find the line, too few to matter. */
  readonly id: string;
  readonly name: string;
  readonly createdAt?: number;
  readonly expiresAt?: number;
  readonly routes: readonly string[];
  readonly usage: Readonly<UsageRecord>;
}

/** One key in /api-keys. Never its digest or the key: `id` is the digest's first 8 hex digits. */
export interface ApiKeyReport {
  readonly name: string;
  readonly id: string;
  readonly created_at: string | null;
  readonly expires_at: string | null;
  /** Null when not used since `since`. */
  readonly last_used_at: string | null;
  readonly routes: readonly string[];
  readonly expired: boolean;
  /** Not used within unused_after_seconds, counting from the latest of its last use, created_at and `since`. */
  readonly unused: boolean;
}

/** The /api-keys document. */
export interface ApiKeysDocument {
  /** When last_used_at started being kept (with --workers: when the latest worker started). */
  readonly since: string;
  readonly unused_after_seconds: number;
  readonly keys: readonly ApiKeyReport[];
}

const iso = (ms: number | undefined) => (ms === undefined || ms === 0 ? null : new Date(ms).toISOString());

export function apiKeysDocument(
  keys: { entries(): readonly ApiKeyEntry[] },
  usage: ApiKeyUsage,
  unusedAfterMs: number,
  now: number,
): ApiKeysDocument {
  return {
    since: new Date(usage.since).toISOString(),
    unused_after_seconds: unusedAfterMs / 1000,
    keys: keys.entries().map((k) => ({
      name: k.name,
      id: k.id,
      created_at: iso(k.createdAt),
      expires_at: iso(k.expiresAt),
      last_used_at: iso(k.usage.lastUsedAt),
      routes: k.routes,
      expired: k.expiresAt !== undefined && now >= k.expiresAt,
      // A key made a week ago is not "unused for 30 days" because the sidecar restarted yesterday, nor
      // one made yesterday because the sidecar has run for a month.
      unused: now - Math.max(k.usage.lastUsedAt, k.createdAt ?? 0, usage.since) >= unusedAfterMs,
    })),
  };
}

/**
 * `--workers`: the workers' documents as one. A key was last used when any worker last saw it, and is
 * unused only if every worker that lists it says so (a worker restarted recently says not yet).
 */
export function mergeApiKeysDocuments(documents: readonly ApiKeysDocument[]): ApiKeysDocument {
  const merged = new Map<string, ApiKeyReport>();
  for (const doc of documents) {
    for (const key of doc.keys) {
      // Two workers may be a reload apart: a key is the same key if its id and name are.
      const at = `${key.id} ${key.name}`;
      const seen = merged.get(at);
      merged.set(
        at,
        seen === undefined
          ? key
          : {
              ...seen,
              last_used_at: latest(seen.last_used_at, key.last_used_at),
              expired: seen.expired || key.expired,
              unused: seen.unused && key.unused,
            },
      );
    }
  }
  return {
    since: documents.map((d) => d.since).reduce((a, b) => (a > b ? a : b), new Date(0).toISOString()),
    unused_after_seconds: documents[0]?.unused_after_seconds ?? 0,
    keys: [...merged.values()],
  };
}

function latest(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return a > b ? a : b;
}

/** The key gauges: keys listed, and keys unused for --api-key-unused-after. */
export function apiKeyCounts(doc: ApiKeysDocument): { listed: number; unused: number } {
  return { listed: doc.keys.length, unused: doc.keys.filter((k) => k.unused).length };
}
