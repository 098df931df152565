// A minimal HTTP/1.1 response reader for a closed-loop client: one request in flight per connection, so
// it only has to find where the current response ends (Content-Length, chunked, or no body) and return
// its status. Cheap on purpose: the load generator shares the cores with what it measures.
import { Buffer } from 'node:buffer';

const HEADER_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const CHUNKED = /\r\ntransfer-encoding:[^\r]*chunked/i;

/**
 * Where a chunked body that starts at `start` ends (the index after the last CRLF), or -1 when more bytes
 * are needed. Trailers are not expected from the servers under test and are refused.
 * @param {Buffer} buf
 * @param {number} start
 * @returns {number}
 */
function chunkedEnd(buf, start) {
  let at = start;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) return -1;
    const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
    if (!Number.isFinite(size)) throw new Error('malformed chunk size');
    if (size === 0) return buf.length >= lineEnd + 4 ? lineEnd + 4 : -1;
    at = lineEnd + 2 + size + 2;
    if (at > buf.length) return -1;
  }
}

export class ResponseParser {
  /** @type {Buffer | undefined} */
  #pending;

  /**
   * Feeds bytes; returns the status code once the whole response has arrived, else 0.
   * @param {Buffer} chunk
   * @returns {number}
   */
  push(chunk) {
    const buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    const headerEnd = buf.indexOf(HEADER_END);
    if (headerEnd < 0) {
      this.#pending = buf;
      return 0;
    }
    const head = buf.toString('latin1', 0, headerEnd);
    const status = Number(head.slice(9, 12));
    const bodyStart = headerEnd + 4;
    let end;
    const length = CONTENT_LENGTH.exec(head);
    if (length) end = bodyStart + Number(length[1]);
    else if (CHUNKED.test(head)) end = chunkedEnd(buf, bodyStart);
    else if (status === 204 || status === 304 || (status >= 100 && status < 200)) end = bodyStart;
    else throw new Error('response without framing (read-until-close is not supported)');
    if (end < 0 || buf.length < end) {
      this.#pending = buf;
      return 0;
    }
    // A closed-loop client never has a second response queued; anything more is a protocol error.
    if (buf.length > end) throw new Error('unexpected bytes after the response');
    this.#pending = undefined;
    return status;
  }

  /** Bytes of an unfinished response are waiting. */
  get busy() {
    return this.#pending !== undefined;
  }

  reset() {
    this.#pending = undefined;
  }
}
