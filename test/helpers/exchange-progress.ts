// An ExchangeProgress for the forwarders' unit tests: records what a forwarder reports (the app reached,
// the body bytes each way, the outcome), as inbound.ts's Exchange would receive it.
import type { ExchangeProgress, Outcome } from '../../src/proxy/access-log.js';

export type RecordingExchange = ExchangeProgress & { outcomes: Outcome[]; reachedCount: number };

let next = 0;

export function recordingExchange(onReached: () => void = () => {}): RecordingExchange {
  const ex: RecordingExchange = {
    id: `test-request-${++next}`,
    bytesIn: 0,
    bytesOut: 0,
    status: 0,
    outcomes: [],
    reachedCount: 0,
    reached() {
      ex.reachedCount++;
      onReached();
    },
    headWritten() {},
    fail(outcome) {
      ex.outcomes.push(outcome);
    },
  };
  return ex;
}
