// What every inbound listener counts, on a real loopback TLS server: open and closed connections, a
// connection over --max-connections dropped with its log line, and a failed handshake counted and logged
// with its reason before any peer could be judged.
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { createServer, type Server } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { accountConnections } from '../../src/proxy/connection-accounting.js';
import { createDevCa, issueSvid } from '../helpers/pki.js';
import { countingMetrics, listenOn } from '../helpers/proxy-unit.js';
import { capturingLogger } from '../helpers/sidecar.js';

let tlsOptions: { cert: string; key: string };
let server: Server | undefined;
const sockets: Socket[] = [];

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const svid = await issueSvid(ca, { id: 'spiffe://example.org/server' });
  tlsOptions = { cert: svid.chainPem, key: svid.keyPem };
});

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  server?.close();
  server = undefined;
});

async function accountingServer(maxConnections: number) {
  const metrics = countingMetrics();
  const { log, logs } = capturingLogger();
  const accepted: Socket[] = [];
  server = createServer({ ...tlsOptions, handshakeTimeout: 10_000 });
  accountConnections(server, { maxConnections, metrics, log }, (socket) => accepted.push(socket));
  const port = await listenOn(server);
  return { metrics, logs, accepted, port };
}

function open(port: number): Socket {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  return socket;
}

/** Resolves once `check` holds, re-checking on each event the server emits. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}

describe('accountConnections', () => {
  it('counts a connection opened, hands its socket on, and counts it closed', async () => {
    const { metrics, accepted, port } = await accountingServer(10);
    const client = open(port);
    await once(client, 'connect');
    await until(() => accepted.length === 1);
    expect(metrics.count('connectionOpened')).toBe(1);
    expect(metrics.count('connectionClosed')).toBe(0);
    client.destroy();
    await once(accepted[0], 'close');
    expect(metrics.count('connectionClosed')).toBe(1);
  });

  it('drops a connection over the limit, counts and logs it, and still serves the first', async () => {
    const { metrics, logs, accepted, port } = await accountingServer(1);
    const first = open(port);
    await once(first, 'connect');
    await until(() => accepted.length === 1);
    const second = open(port);
    await once(second, 'close');
    expect(metrics.count('connectionDropped')).toBe(1);
    expect(logs).toContainEqual(expect.objectContaining({ event: 'connection_dropped', reason: 'max_connections' }));
    expect(accepted).toHaveLength(1);
    expect(first.destroyed).toBe(false);
  });

  it('counts and logs a failed handshake with its reason', async () => {
    const { metrics, logs, port } = await accountingServer(10);
    const client = open(port);
    await once(client, 'connect');
    client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'); // not a TLS ClientHello
    await once(client, 'close');
    await until(() => metrics.count('handshake', 'failure') === 1);
    const line = logs.find((l) => l.event === 'tls_rejected');
    expect(line).toMatchObject({ event: 'tls_rejected', remote: '127.0.0.1' });
    expect(String(line?.reason)).toMatch(/^ERR_|^ECONNRESET$/);
  });
});
