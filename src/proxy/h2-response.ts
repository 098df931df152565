// Handing an HTTP/2 response from the app (h2c) or a remote (outbound h2) to an HTTP/2 caller: status and
// fields, the body as it streams, and the trailers (gRPC's status lives there). A response without body or
// trailers, such as gRPC's "Trailers-Only" (its status in these very headers), stays one HEADERS frame
// that ends the stream, as it was sent.
import { cancelStream } from './cancel-stream.js';
import type * as http2 from 'node:http2';
import { h2ResponseToH1, respondH2 } from './http2-headers.js';
import { relay, type RelaySide, type RelayWatch } from './relay.js';

/**
 * Call on the upstream stream's 'response'. Returns false, having sent nothing and cancelled `up`, when
 * HTTP/2 cannot carry the response: the caller then answers 502. `onChunk`, `onError`: as for relay().
 */
export function forwardH2Response(
  up: http2.ClientHttp2Stream,
  down: http2.ServerHttp2Stream,
  responseHeaders: http2.IncomingHttpHeaders,
  watch?: RelayWatch,
  onChunk?: (chunk: Buffer) => void,
  onError?: (err: Error, side: RelaySide) => void,
): boolean {
  const status = Number(responseHeaders[':status'] ?? 502);
  const fields = h2ResponseToH1(responseHeaders);
  if (up.endAfterHeaders || responseHeaders['grpc-status'] !== undefined) {
    return respondH2(down, status, fields, { endStream: true });
  }
  if (!respondH2(down, status, fields, { waitForTrailers: true })) {
    cancelStream(up);
    return false;
  }
  // 'trailers' comes before the end of `up`, and so before `down` asks for them.
  let trailers: http2.IncomingHttpHeaders | undefined;
  up.on('trailers', (t) => (trailers = t));
  down.on('wantTrailers', () => down.sendTrailers(trailers ? h2ResponseToH1(trailers) : {}));
  relay(up, down, onError, watch, onChunk);
  return true;
}
