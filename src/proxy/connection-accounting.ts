// What every inbound listener (HTTP and TCP) counts and logs about its connections, in one place: the
// --max-connections limit and its drops, open connections, and TLS handshakes that failed before a peer
// could be judged. The names are the metrics' and log events' contract (README, "Operations"). Drops and
// failed handshakes are logged within the budget of rejection lines (rejection-log.ts).
import type { Server as NetServer, Socket } from 'node:net';
import type { IdentitySource } from '../identity/source.js';
import type { Logger } from '../log.js';
import type { ProxyMetrics } from './proxy-metrics.js';
import { rejectionLine, suppressedField } from './rejection-log.js';

export function accountConnections(
  server: NetServer,
  {
    maxConnections,
    metrics,
    log,
    identity,
  }: {
    maxConnections: number;
    metrics: ProxyMetrics;
    log: Logger;
    /** Ours, for what to check when a caller refuses our certificate. */
    identity?: IdentitySource;
  },
  /** Called with each accepted socket (before TLS), for listeners that track their own. */
  onSocket?: (socket: Socket) => void,
): void {
  server.maxConnections = maxConnections;
  server.on('drop', () => {
    metrics.connectionDropped();
    const dropped = rejectionLine(log, 'connection_dropped', metrics);
    if (dropped < 0) return;
    log.warn(
      { event: 'connection_dropped', reason: 'max_connections', suppressed: suppressedField(dropped) },
      'connection limit reached',
    );
  });
  server.on('connection', (socket: Socket) => {
    // Read (and cached by Node) while the connection is open: a TLS client that refuses us and leaves at
    // once is gone before its handshake error is reported, and with it the address (see remoteOf).
    void socket.remoteAddress;
    metrics.connectionOpened();
    socket.once('close', () => metrics.connectionClosed());
    onSocket?.(socket);
  });
  // Only TLS servers emit it; a plain-HTTP listener (JWT mode) simply never does.
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const failure = handshakeFailure(err);
    metrics.handshake('failure', failure.reason);
    const remote = remoteOf(socket);
    const dropped = rejectionLine(log, 'tls_rejected', metrics, undefined, remote);
    if (dropped < 0) return;
    const fields = {
      event: 'tls_rejected',
      reason: failure.reason,
      alert: failure.alert,
      remote,
      error: err.message.trim(),
      suppressed: suppressedField(dropped),
    };
    if (failure.reason === 'caller_refused_our_certificate')
      log.warn(fields, refusedCertificateMessage(failure.alert as string, identity));
    else log.info(fields, 'TLS handshake failed');
  });
}

/**
 * The peer's address of a TLS socket whose connection may already be closed: the TLS socket's own, else that
 * of the TCP socket under it (Node's `_parent`, whose address was read at accept time).
 */
function remoteOf(socket: Socket): string | undefined {
  return socket.remoteAddress ?? (socket as Socket & { _parent?: Socket })._parent?.remoteAddress;
}

/**
 * TLS alerts (RFC 8446 §6.2) a client sends when it will not accept the certificate we presented: its
 * verdict on us, not a fault of its own.
 */
const CERTIFICATE_ALERTS = new Set([
  'bad_certificate',
  'unsupported_certificate',
  'certificate_revoked',
  'certificate_expired',
  'certificate_unknown',
  'unknown_ca',
]);

/** OpenSSL and Node codes of failures seen before a TLS client could be judged, as stable reasons. */
const REASONS: Readonly<Record<string, string>> = {
  ECONNRESET: 'connection_reset',
  ERR_TLS_HANDSHAKE_TIMEOUT: 'handshake_timeout',
  ERR_SSL_HTTP_REQUEST: 'plain_http_request',
  ERR_SSL_WRONG_VERSION_NUMBER: 'not_tls',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'unsupported_tls_version',
  ERR_SSL_NO_SHARED_CIPHER: 'no_shared_cipher',
  ERR_SSL_NO_APPLICATION_PROTOCOL: 'no_shared_alpn',
};

/** An alert the client sent: `ERR_SSL_TLSV1_ALERT_UNKNOWN_CA` → `unknown_ca`. */
const ALERT_CODE = /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_([A-Z0-9_]+)$/;

export interface HandshakeFailure {
  /**
   * `caller_refused_our_certificate`; `caller_sent_alert` (another alert, in `alert`); a known failure
   * (`connection_reset`, `handshake_timeout`, `plain_http_request`, `not_tls`, `unsupported_tls_version`,
   * `no_shared_cipher`, `no_shared_alpn`); else OpenSSL's own reason in snake_case (`ERR_SSL_X_Y` → `x_y`),
   * or `handshake_failed`. A bounded set: fit for a metric label.
   */
  reason: string;
  /** The TLS alert the client sent, snake_case as RFC 8446 names it (`unknown_ca`). */
  alert?: string;
}

/**
 * The TLS alert with which a remote refused the certificate we presented (`bad_certificate`, `unknown_ca`...),
 * or undefined for any other error. Over TLS 1.3 it arrives after our side of the handshake is done, as the
 * error of the request that was under way.
 */
export function certificateAlertOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const alert = typeof code === 'string' ? ALERT_CODE.exec(code)?.[1].toLowerCase() : undefined;
  return alert !== undefined && CERTIFICATE_ALERTS.has(alert) ? alert : undefined;
}

/** A failed handshake's stable reason, from Node's error code (the raw OpenSSL text goes to `error`). */
export function handshakeFailure(err: NodeJS.ErrnoException): HandshakeFailure {
  const code = err.code ?? '';
  const alert = ALERT_CODE.exec(code)?.[1].toLowerCase();
  if (alert !== undefined)
    return { reason: CERTIFICATE_ALERTS.has(alert) ? 'caller_refused_our_certificate' : 'caller_sent_alert', alert };
  const known = REASONS[code];
  if (known !== undefined) return { reason: known };
  if (/^ERR_SSL_[A-Z0-9_]+$/.test(code)) return { reason: code.slice('ERR_SSL_'.length).toLowerCase() };
  return { reason: 'handshake_failed' };
}

/** What an operator should check when a caller refuses our certificate, with the facts at hand. */
function refusedCertificateMessage(alert: string, identity: IdentitySource | undefined): string {
  let ours = '';
  try {
    if (identity) {
      const { svid } = identity.current();
      const expired = identity.status().reason === 'svid_expired' ? ', EXPIRED' : '';
      ours = ` (ours: ${svid.id.toString()}, trust domain ${svid.id.trustDomain}, valid until ${svid.chain[0].notAfter.toISOString()}${expired})`;
    }
  } catch {
    // No identity to describe: the advice stands without it.
  }
  if (alert === 'certificate_expired')
    return `the caller refused our certificate as expired (TLS alert ${alert}): is our SVID being renewed, and is the caller's clock right?${ours}`;
  if (alert === 'unknown_ca')
    return `the caller does not trust the CA that signed our certificate (TLS alert ${alert}): does it have our trust domain's bundle, and the current one?${ours}`;
  return `the caller refused our certificate (TLS alert ${alert}): does it trust our trust domain's bundle, does it expect our SPIFFE ID, is our SVID unexpired?${ours}`;
}
