// The access tokens of one route, by key (one key for client credentials, one per subject token for an
// exchange): a hit is one map lookup; from 80% of its lifetime a token is refreshed in the background and it
// is never sent past 95%; one request per key at a time; bounded, oldest out first. A refresh that fails
// keeps the token until then; one the endpoint refuses drops it.
import type { TokenOutcome } from './token-endpoint.js';

/** When a refresh starts, and when a token stops being sent (it could expire on its way), as lifetime shares. */
const REFRESH_AT = 0.8;
const SEND_UNTIL = 0.95;
/**
 * Token requests under way at once, per route: each subject token of an exchange is its own key, so a flood of
 * distinct tokens must not become a flood of requests to the token endpoint (each waits up to its deadline).
 * Past it the answer is a failure at once (503 token_unavailable), nothing asked.
 */
export const MAX_TOKEN_REQUESTS_IN_FLIGHT = 64;

type Issued = Extract<TokenOutcome, { ok: true }>;

interface Entry {
  readonly outcome: Issued;
  readonly refreshAt: number;
  readonly sendUntil: number;
}

export class AccessTokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<TokenOutcome>>();

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * The token for `key`: cached, or from `fetch` (shared with every request waiting for the same key).
   * `notAfter`: when it must stop being sent whatever its own lifetime (the subject token's expiry); asked
   * only when a token is fetched, so that a hit stays one map lookup.
   */
  get(key: string, fetch: () => Promise<TokenOutcome>, notAfter?: () => number | undefined): Promise<TokenOutcome> {
    const entry = this.entries.get(key);
    if (entry) {
      const now = this.now();
      if (now < entry.refreshAt) return Promise.resolve(entry.outcome);
      if (now < entry.sendUntil) {
        // The caller is not kept waiting for a token it already has; a failure is logged by `fetch`.
        void this.fetchOnce(key, fetch, notAfter);
        return Promise.resolve(entry.outcome);
      }
      this.entries.delete(key);
    }
    return this.fetchOnce(key, fetch, notAfter);
  }

  private fetchOnce(
    key: string,
    fetch: () => Promise<TokenOutcome>,
    notAfter: (() => number | undefined) | undefined,
  ): Promise<TokenOutcome> {
    let pending = this.inFlight.get(key);
    if (!pending && this.inFlight.size >= MAX_TOKEN_REQUESTS_IN_FLIGHT) {
      return Promise.resolve({
        ok: false,
        refused: false,
        error: 'too_many_token_requests',
        message: `${MAX_TOKEN_REQUESTS_IN_FLIGHT} token requests are under way already`,
      });
    }
    if (!pending) {
      pending = fetch()
        .catch((err: unknown): TokenOutcome => ({ ok: false, refused: false, error: 'internal', message: String(err) }))
        .then((outcome) => {
          this.keep(key, outcome, notAfter?.() ?? Infinity);
          return outcome;
        })
        .finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  private keep(key: string, outcome: TokenOutcome, notAfter: number): void {
    if (!outcome.ok) {
      // Refused now (a revoked subject, say): what was issued for it before must not go on being sent.
      if (outcome.refused) this.entries.delete(key);
      return;
    }
    const lifetime = outcome.expiresAt - outcome.issuedAt;
    const sendUntil = Math.min(outcome.issuedAt + lifetime * SEND_UNTIL, notAfter);
    const refreshAt = Math.min(outcome.issuedAt + lifetime * REFRESH_AT, sendUntil);
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(key, { outcome, refreshAt, sendUntil });
  }
}
