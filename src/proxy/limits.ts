// Resource limits of the inbound listener (README, "Limits"); their defaults are in config/defaults.ts.

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
  /** Request header fields (lines); more gets 431. */
  maxHeaderCount: number;
  /** Open connections; more are closed at once. */
  maxConnections: number;
  /** The app must send its response headers within this, or the caller gets 504. */
  upstreamTimeoutMs: number;
  /** A request body that sends no byte for this long (while we wait for one) gets 408, or is cut. */
  requestBodyTimeoutMs: number;
  /** Bytes per second a request body must average once it has been read for 5 s (0: no minimum). */
  requestBodyMinRate: number;
  /** A caller that takes no response byte for this long (we have bytes waiting for it) is cut. */
  responseWriteTimeoutMs: number;
  /** A WebSocket tunnel with no byte in either direction for this long is closed. */
  tunnelIdleTimeoutMs: number;
}
