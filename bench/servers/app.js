// The app behind every proxy: a fixed response to every request, over raw TCP with a minimal HTTP/1.1
// reader, so that the app costs the shared cores as little as possible and every row pays the same.
// Usage: node bench/servers/app.js PORT   (prints "listening PORT" when ready)
import { Buffer } from 'node:buffer';
import net from 'node:net';
import process from 'node:process';

const BODY = Buffer.from('{"ok":true,"service":"bench-app"}\n');
const RESPONSE = Buffer.concat([
  Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\n\r\n`),
  BODY,
]);
const RESPONSE_CLOSE = Buffer.concat([
  Buffer.from(
    `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\nconnection: close\r\n\r\n`,
  ),
  BODY,
]);
const BAD_REQUEST = Buffer.from('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)/i;
const CLOSE = /\r\nconnection:[^\r]*close/i;
const MAX_HEAD = 64 * 1024;

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  /** @type {Buffer | undefined} */
  let pending;
  socket.on('data', (chunk) => {
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      const headerEnd = buf.indexOf(HEADER_END);
      if (headerEnd < 0) {
        if (buf.length > MAX_HEAD) socket.end(BAD_REQUEST);
        pending = buf.length > 0 ? buf : undefined;
        return;
      }
      const head = buf.toString('latin1', 0, headerEnd);
      // Bodies are sized by Content-Length only: the bench never sends chunked requests.
      if (/\r\ntransfer-encoding:/i.test(head)) {
        socket.end(BAD_REQUEST);
        return;
      }
      const length = CONTENT_LENGTH.exec(head);
      const end = headerEnd + 4 + (length ? Number(length[1]) : 0);
      if (buf.length < end) {
        pending = buf;
        return;
      }
      buf = buf.subarray(end);
      if (CLOSE.test(head)) {
        socket.end(RESPONSE_CLOSE);
        return;
      }
      socket.write(RESPONSE);
    }
  });
  socket.on('error', () => socket.destroy());
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`listening ${/** @type {import('node:net').AddressInfo} */ (server.address()).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
