// What every inbound listener (HTTP and TCP) counts and logs about its connections, in one place: the
// --max-connections limit and its drops, open connections, and TLS handshakes that failed before a peer
// could be judged. The names are the metrics' and log events' contract (README, "Operations").
import type { Server as NetServer, Socket } from 'node:net';
import type { Logger } from '../log.js';
import type { ProxyMetrics } from './proxy-metrics.js';

export function accountConnections(
  server: NetServer,
  { maxConnections, metrics, log }: { maxConnections: number; metrics: ProxyMetrics; log: Logger },
  /** Called with each accepted socket (before TLS), for listeners that track their own. */
  onSocket?: (socket: Socket) => void,
): void {
  server.maxConnections = maxConnections;
  server.on('drop', () => {
    metrics.connectionDropped();
    log.warn({ event: 'connection_dropped', reason: 'max_connections' }, 'connection limit reached');
  });
  server.on('connection', (socket: Socket) => {
    metrics.connectionOpened();
    socket.once('close', () => metrics.connectionClosed());
    onSocket?.(socket);
  });
  // Only TLS servers emit it; a plain-HTTP listener (JWT mode) simply never does.
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const reason = err.code ?? 'ERR_TLS';
    metrics.handshake('failure', reason);
    log.info({ event: 'tls_rejected', reason, remote: socket.remoteAddress }, err.message);
  });
}
