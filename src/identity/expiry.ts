// Watches the expiry of our current SVID chain (an intermediate may expire before the leaf): logs once
// when it passes with no replacement, so that the source can report itself not ready. Re-armed on every
// new identity.
import type { Logger } from '../log.js';
import type { X509Identity } from './source.js';

/** The longest delay setTimeout accepts; an expiry further away is re-armed when it comes closer. */
const MAX_TIMER_MS = 2_147_483_647;

/** When our chain stops being valid: the earliest notAfter of the leaf and its intermediates. */
export function chainNotAfter(identity: X509Identity): number {
  return Math.min(...identity.svid.chain.map((c) => c.notAfter.getTime()));
}

export class ExpiryWatch {
  private timer: NodeJS.Timeout | undefined;
  private expiredFlag = false;

  constructor(private readonly log: Logger) {}

  get expired(): boolean {
    return this.expiredFlag;
  }

  track(identity: X509Identity): void {
    clearTimeout(this.timer);
    this.expiredFlag = false;
    const delay = chainNotAfter(identity) - Date.now() + 1;
    if (delay <= 0) return this.expire(identity);
    this.timer = setTimeout(
      () => (delay > MAX_TIMER_MS ? this.track(identity) : this.expire(identity)),
      Math.min(delay, MAX_TIMER_MS),
    );
    this.timer.unref();
  }

  close(): void {
    clearTimeout(this.timer);
  }

  private expire(identity: X509Identity): void {
    this.expiredFlag = true;
    const leaf = identity.svid.chain[0];
    this.log.warn(
      { event: 'svid_expired', serial: leaf.serialNumber, not_after: new Date(chainNotAfter(identity)).toISOString() },
      'our SVID has expired and no valid replacement was found: peers will refuse new connections; the sidecar is not ready',
    );
  }
}
