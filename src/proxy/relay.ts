// Moving one message body (or byte stream) to its destination, the way stream.pipeline() does — with
// back-pressure, `to` ended when `from` ends, both destroyed when either fails or closes early — but
// without pipeline's per-call AbortController: in Node 20 that alone (a DOMException with a stack trace
// per request) cost ~40% of a proxied request's CPU (bench/, profile in the README's Performance section).
import type { Readable, Writable } from 'node:stream';

export function relay(from: Readable, to: Writable, onError?: (err: Error) => void): void {
  let failed = false;
  const fail = (err: Error) => {
    if (failed) return;
    failed = true;
    from.destroy();
    to.destroy();
    onError?.(err);
  };
  from.on('error', fail);
  to.on('error', fail);
  // An aborted source (the peer went away mid-body) must not leave the destination waiting, and a
  // destination that closed early (the client left) must stop the source.
  from.once('close', () => {
    if (!from.readableEnded) fail(new Error('the source closed before its end'));
  });
  to.once('close', () => {
    if (!to.writableFinished) fail(new Error('the destination closed before the end'));
  });
  from.pipe(to);
}
