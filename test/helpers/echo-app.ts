// The app behind the sidecar in tests: records every request it sees and echoes it back as JSON.
// An Upgrade request gets a 101 and then has its bytes echoed, like a minimal WebSocket server.
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  bodySha256: string;
  bodyLength: number;
}

export interface EchoApp {
  url: string;
  port: number;
  seen: SeenRequest[];
  upgrades: SeenRequest[];
  close(): Promise<void>;
}

export async function startEchoApp(): Promise<EchoApp> {
  const seen: SeenRequest[] = [];
  const upgrades: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      length += chunk.length;
    });
    req.on('end', () => {
      const record = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        bodySha256: hash.digest('hex'),
        bodyLength: length,
      };
      seen.push(record);
      const answer = () => {
        res.setHeader('content-type', 'application/json');
        res.setHeader('x-app', 'echo');
        res.end(JSON.stringify(record));
      };
      // /slow?ms=N answers after N milliseconds (drain and timeout tests).
      const slow = /^\/slow\?ms=(\d+)$/.exec(record.url);
      if (slow) setTimeout(answer, Number(slow[1]));
      else answer();
    });
  });
  server.on('upgrade', (req, socket, head) => {
    upgrades.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodySha256: '',
      bodyLength: 0,
    });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    upgrades,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
