// Cancelling an HTTP/2 stream we opened to the app (h2c) or a remote (outbound h2), never as a finished
// request: Node's close(CANCEL) ends the writable side first, so the peer gets END_STREAM before the
// RST_STREAM and may act on a cut-short body as a whole request (a gRPC unary handler would). While our side
// of the request is still open, the stream is destroyed instead: RST_STREAM at once (INTERNAL_ERROR).
import type * as http2 from 'node:http2';
import { H2_CANCEL } from './h2-error-codes.js';

export function cancelStream(stream: http2.ClientHttp2Stream): void {
  if (stream.closed || stream.destroyed) return;
  if (stream.writableFinished) stream.close(H2_CANCEL);
  else stream.destroy(new Error('cancelled before the request ended'));
}
