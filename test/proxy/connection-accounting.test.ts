// What every inbound listener counts, on a real loopback TLS server: open and closed connections, a
// connection over --max-connections dropped with its log line, and a failed handshake counted and logged
// with a stable reason before any peer could be judged; a caller (openssl s_client, as any OpenSSL-based
// client) refusing our certificate is a warning that says what to check.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { createServer, type Server } from 'node:tls';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { accountConnections, handshakeFailure } from '../../src/proxy/connection-accounting.js';
import { createDevCa, issueSvid, tempDir } from '../helpers/pki.js';
import { countingMetrics, listenOn } from '../helpers/proxy-unit.js';
import { capturingLogger } from '../helpers/sidecar.js';

let tlsOptions: { cert: string; key: string };
let otherCaFile: string;
let removeTemp: () => Promise<void>;
let server: Server | undefined;
const sockets: Socket[] = [];

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const svid = await issueSvid(ca, { id: 'spiffe://example.org/server' });
  tlsOptions = { cert: svid.chainPem, key: svid.keyPem };
  const other = await createDevCa({ trustDomain: 'elsewhere.org' });
  const temp = await tempDir();
  otherCaFile = join(temp.path, 'elsewhere.pem');
  await writeFile(otherCaFile, other.certPem);
  removeTemp = temp.remove;
});

afterAll(() => removeTemp());

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

/** Resolves with what `check` returns once it is truthy, re-checking after each turn of the event loop. */
async function until<T>(check: () => T): Promise<NonNullable<T>> {
  let value = check();
  while (!value) {
    await new Promise((resolve) => setImmediate(resolve));
    value = check();
  }
  return value as NonNullable<T>;
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
    const line = await until(() => logs.find((l) => l.event === 'tls_rejected'));
    expect(line).toMatchObject({ event: 'tls_rejected', level: 'info', remote: '127.0.0.1' });
    // HTTP/1.1 sent to a TLS port: OpenSSL says "http request"; we say it in a stable word, and keep its text.
    expect(line.reason).toBe('plain_http_request');
    expect(line.error).toMatch(/http request/);
    expect(metrics.calls).toContainEqual(['handshake', 'failure', 'plain_http_request']);
  });

  it.each(['-tls1_3', '-tls1_2'])(
    'a caller that does not trust our CA (openssl s_client %s): a warning naming the alert and what to check',
    async (version) => {
      const { metrics, logs, port } = await accountingServer(10);
      const exit = await new Promise<number | null>((resolve) => {
        const client = spawn(
          'openssl',
          ['s_client', version, '-connect', `127.0.0.1:${port}`, '-verify_return_error', '-CAfile', otherCaFile],
          { stdio: ['pipe', 'ignore', 'ignore'] },
        );
        client.stdin.end();
        client.on('exit', resolve);
      });
      expect(exit).not.toBe(0);
      const line = await until(() => logs.find((l) => l.event === 'tls_rejected'));
      expect(line).toMatchObject({
        level: 'warn',
        reason: 'caller_refused_our_certificate',
        alert: 'unknown_ca',
        remote: '127.0.0.1',
      });
      expect(line.msg).toMatch(/does not trust the CA that signed our certificate/);
      expect(line.error).toMatch(/alert unknown ca/);
      expect(metrics.calls).toContainEqual(['handshake', 'failure', 'caller_refused_our_certificate']);
    },
  );
});

describe('handshakeFailure', () => {
  const failure = (code: string) => handshakeFailure(Object.assign(new Error('x'), { code }));

  it.each([
    ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'caller_refused_our_certificate', 'unknown_ca'],
    ['ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'caller_refused_our_certificate', 'bad_certificate'],
    ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', 'caller_refused_our_certificate', 'certificate_expired'],
    ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN', 'caller_refused_our_certificate', 'certificate_unknown'],
    ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'caller_sent_alert', 'handshake_failure'],
    ['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'caller_sent_alert', 'protocol_version'],
  ])('%s: %s (%s)', (code, reason, alert) => {
    expect(failure(code)).toEqual({ reason, alert });
  });

  it.each([
    ['ECONNRESET', 'connection_reset'],
    ['ERR_TLS_HANDSHAKE_TIMEOUT', 'handshake_timeout'],
    ['ERR_SSL_HTTP_REQUEST', 'plain_http_request'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'not_tls'],
    ['ERR_SSL_LENGTH_TOO_SHORT', 'length_too_short'],
    ['', 'handshake_failed'],
    ['EWHATEVER', 'handshake_failed'],
  ])('%s: %s', (code, reason) => {
    expect(failure(code)).toEqual({ reason });
  });
});
