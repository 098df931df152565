// Resource limits of the inbound listener, and their defaults (README, "Limits").

/** Resource limits of the listener (README, "Limits"). */
export interface InboundLimits {
  /** A TLS handshake must complete within this. */
  handshakeTimeoutMs: number;
  /** The request line and headers must arrive within this (slowloris). */
  headerTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  idleTimeoutMs: number;
  /** Request line plus headers, in bytes; more gets 431. */
  maxHeaderBytes: number;
  /** Open connections; more are closed at once. */
  maxConnections: number;
  /** The app must send its response headers within this, or the caller gets 504. */
  upstreamTimeoutMs: number;
}

export const DEFAULT_LIMITS: InboundLimits = Object.freeze({
  handshakeTimeoutMs: 10_000,
  headerTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  maxHeaderBytes: 16 * 1024,
  maxConnections: 10_000,
  upstreamTimeoutMs: 60_000,
});
