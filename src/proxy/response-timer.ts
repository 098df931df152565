// --upstream-timeout, for the app inbound and the remote outbound: the response headers must come within
// `ms` of the whole request having been sent. An upload or a client stream may take as long as it takes;
// only the wait for an answer afterwards is bounded.
import type { Writable } from 'node:stream';

export interface ResponseTimer {
  /** The response headers arrived, or the exchange ended: no timeout any more. */
  clear(): void;
}

export function startResponseTimer(request: Writable, ms: number, onTimeout: () => void): ResponseTimer {
  let handle: NodeJS.Timeout | undefined;
  let cleared = false;
  const start = () => {
    if (!cleared) handle = setTimeout(onTimeout, ms);
  };
  if (request.writableFinished) start();
  else request.once('finish', start);
  return {
    clear() {
      cleared = true;
      clearTimeout(handle);
    },
  };
}
