// Moving one message body (or byte stream) to its destination, the way stream.pipeline() does — with
// back-pressure, `to` ended when `from` ends, both destroyed when either fails or closes early — but
// without pipeline's per-call AbortController: in Node 20 that alone (a DOMException with a stack trace
// per request) cost ~40% of a proxied request's CPU (bench/, profile in the README's Performance section).
//
// Optionally it also watches for a party that stops moving: a source that sends nothing while we wait for
// it (a stalled upload), or a destination that takes nothing while we have bytes for it (a caller that
// never reads). Either would otherwise hold a connection, and an app connection, for ever.
import type { Readable, Writable } from 'node:stream';

/**
 * What stopped moving: the source sent nothing, or too little on average (a trickle: one byte now and then
 * resets any idle timer), or the destination took nothing, for the limit.
 */
export type RelayStall = 'source_idle' | 'source_too_slow' | 'destination_stalled';

export interface RelayWatch {
  /** The source may send nothing for this long while we wait for it (not while back-pressure holds it). */
  sourceIdleMs?: number;
  /**
   * Once the source has been read for `afterMs` (time held back by back-pressure not counted), it must
   * have sent at least `bytesPerSecond` on average.
   */
  sourceMinRate?: { bytesPerSecond: number; afterMs: number };
  /** The destination may take nothing for this long while bytes wait for it. */
  destinationStallMs?: number;
  /** Called once, instead of destroying anything: the caller decides what to answer and what to close. */
  onStall: (stall: RelayStall) => void;
}

/** Which end of a relay failed first. */
export type RelaySide = 'source' | 'destination';

/**
 * `onError`: the first failure, and on which side (the other is destroyed with it). `onChunk`: each chunk
 * read from the source, as it goes (the access line counts body bytes with it).
 */
export function relay(
  from: Readable,
  to: Writable,
  onError?: (err: Error, side: RelaySide) => void,
  watch?: RelayWatch,
  onChunk?: (chunk: Buffer) => void,
): void {
  let failed = false;
  let stop = () => {};
  const fail = (err: Error, side: RelaySide) => {
    if (failed) return;
    failed = true;
    stop();
    from.destroy();
    to.destroy();
    onError?.(err, side);
  };
  from.on('error', (err) => fail(err, 'source'));
  to.on('error', (err) => fail(err, 'destination'));
  // An aborted source (the peer went away mid-body) must not leave the destination waiting, and a
  // destination that closed early (the client left) must stop the source.
  from.once('close', () => {
    if (!from.readableEnded) fail(new Error('the source closed before its end'), 'source');
  });
  to.once('close', () => {
    if (!to.writableFinished) fail(new Error('the destination closed before the end'), 'destination');
  });
  if (onChunk) from.on('data', onChunk);
  if (watch) {
    stop = watchStalls(
      from,
      to,
      (stall) => {
        // From here on the caller decides: nothing is destroyed for it, and no later failure is reported
        // (it may still want to answer on the source's connection, e.g. a 408).
        failed = true;
        from.unpipe(to);
        watch.onStall(stall);
      },
      watch,
    );
  }
  from.pipe(to);
}

/**
 * One timer, in one of two states: waiting for the source (reset by every chunk), or — while pipe() has
 * paused the source because the destination's buffer is full — waiting for the destination to drain.
 * Returns the function that stops watching.
 */
function watchStalls(
  from: Readable,
  to: Writable,
  onStall: (stall: RelayStall) => void,
  { sourceIdleMs, sourceMinRate, destinationStallMs }: RelayWatch,
): () => void {
  let timer: NodeJS.Timeout | undefined;
  let done = false;
  // For the minimum rate: bytes so far, and the time spent waiting for them (paused time excluded).
  let bytes = 0;
  let waitedMs = 0;
  let since = performance.now();
  const arm = (ms: number | undefined, stall: RelayStall) => {
    clearTimeout(timer);
    timer =
      ms === undefined
        ? undefined
        : setTimeout(() => {
            stop();
            onStall(stall);
          }, ms);
  };
  const onData = (chunk: Buffer) => {
    timer?.refresh();
    if (!sourceMinRate) return;
    bytes += chunk.length;
    const now = performance.now();
    waitedMs += now - since;
    since = now;
    if (waitedMs > sourceMinRate.afterMs && (bytes * 1000) / waitedMs < sourceMinRate.bytesPerSecond) {
      stop();
      onStall('source_too_slow');
    }
  };
  const onPause = () => {
    waitedMs += performance.now() - since;
    arm(destinationStallMs, 'destination_stalled');
  };
  const onResume = () => {
    since = performance.now();
    arm(sourceIdleMs, 'source_idle');
  };
  const stop = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    from.off('data', onData);
    from.off('pause', onPause);
    from.off('resume', onResume);
  };
  if (sourceIdleMs !== undefined || sourceMinRate) from.on('data', onData);
  from.on('pause', onPause);
  from.on('resume', onResume);
  // The last bytes may still wait for a caller that does not read: watched until they are flushed.
  from.once('end', () => (destinationStallMs === undefined ? stop() : arm(destinationStallMs, 'destination_stalled')));
  to.once('close', stop);
  to.once('finish', stop);
  arm(sourceIdleMs, 'source_idle');
  return stop;
}
