// The app behind a sidecar that calls out, for the outbound tests: whatever it is asked, it asks the same
// path through its sidecar's outbound route, passing the caller's Authorization on, and answers what came back.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RelayingApp {
  url: string;
  /** The outbound route's port: set it once that sidecar is up (it is started after its app). */
  outboundPort: number;
  close(): Promise<void>;
}

export async function startRelayingApp(): Promise<RelayingApp> {
  let outboundPort = 0;
  const server = createServer((req, res) => {
    void fetch(`http://127.0.0.1:${outboundPort}${req.url}`, {
      headers: req.headers.authorization ? { authorization: req.headers.authorization } : {},
    }).then(async (out) => {
      res.writeHead(out.status, { 'content-type': 'application/json' });
      res.end(await out.text());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get outboundPort() {
      return outboundPort;
    },
    set outboundPort(port: number) {
      outboundPort = port;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
