// The closed-loop load engine: raw HTTP/1.1 over TLS (with a client certificate) or plain TCP, written by
// hand instead of with http.request so that the generator spends as little of the shared cores as it can.
//
// Modes:
// - keepalive: N connections, each sends its next request as soon as the previous response has ended;
// - newconn: N workers, each opens a NEW connection per request (full handshake, no session reuse) and
//   closes it after the response;
// - sequential: one keep-alive connection, one request at a time (unloaded latency).
//
// With `rate`, keepalive and newconn are paced (the soak): each connection or worker still has at most one
// request in flight, but starts it at its next slot rather than at once, so that the server is held at a
// chosen fraction of its capacity instead of saturated.
//
// Requests are counted, and latencies recorded, only inside the measurement window (after the warm-up);
// errors are counted over the whole run (a failure during warm-up is still a failure).
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout } from 'node:timers';
import { setTimeout as delay } from 'node:timers/promises';
import tls from 'node:tls';
import { ResponseParser } from './response-parser.js';

/**
 * @typedef {object} Target
 * @property {string} host
 * @property {number} port
 * @property {string} [path]
 * @property {Record<string, string>} [headers]
 * @property {{ cert: string, key: string, ca: string, verify?: boolean }} [tls] PEM texts; absent: plain TCP
 */

/**
 * @typedef {object} LoadSpec
 * @property {'keepalive' | 'newconn' | 'sequential'} mode
 * @property {Target} target
 * @property {number} [connections] parallel connections (keepalive) or workers (newconn)
 * @property {number} warmupMs
 * @property {number} durationMs
 * @property {number} [maxRequests] sequential: stop after this many measured requests
 * @property {boolean} [recordServerSerials] remember the serial of each server certificate seen
 * @property {boolean} [resumeSessions] newconn: offer the last TLS session of the worker (resumption), for
 *   servers that issue tickets; off by default (every handshake full)
 * @property {number} [rate] keepalive, newconn: requests per second over all connections or workers
 *   (paced closed loop); absent: as fast as the server answers
 */

/**
 * @typedef {object} LoadResult
 * @property {string} mode
 * @property {number} requests completed 2xx responses inside the window
 * @property {number} completed all 2xx responses, warm-up included
 * @property {number} errors failed requests over the whole run (non-2xx, resets, protocol errors)
 * @property {Record<string, number>} errorKinds
 * @property {number} windowMs
 * @property {number} rps
 * @property {Float64Array} latenciesMs latencies of the counted requests
 * @property {string[]} serials distinct server certificate serials (recordServerSerials)
 */

const RETRY_MS = 10;

/**
 * @param {Target} target
 * @param {boolean} close ask the server to close after the response
 */
function requestBytes(target, close) {
  let head = `GET ${target.path ?? '/'} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\n`;
  for (const [name, value] of Object.entries(target.headers ?? {})) head += `${name}: ${value}\r\n`;
  if (close) head += 'Connection: close\r\n';
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/** One client context per certificate set: tls.createSecureContext costs milliseconds, never per connection. */
const contexts = new WeakMap();

/**
 * Without `verify`, the CA is left out on purpose: the chain check then fails at once and Node skips
 * checkServerIdentity and its getPeerCertificate(true), ~0.4 ms of the client's CPU per handshake that
 * would otherwise be taken from the proxy under test (the cores are shared).
 * @param {NonNullable<Target['tls']>} options
 */
function contextFor(options) {
  let context = contexts.get(options);
  if (!context) {
    context = tls.createSecureContext({
      cert: options.cert,
      key: options.key,
      ...(options.verify ? { ca: options.ca } : {}),
    });
    contexts.set(options, context);
  }
  return context;
}

/**
 * @param {Target} target
 * @param {Buffer} [session] a TLS session to resume
 */
function connect(target, session) {
  if (!target.tls) {
    const socket = net.connect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    return socket;
  }
  return tls.connect({
    host: target.host,
    port: target.port,
    secureContext: contextFor(target.tls),
    // SPIFFE authenticates by URI SAN, not host name: the chain is checked (when asked), the name is not.
    rejectUnauthorized: target.tls.verify === true,
    checkServerIdentity: () => undefined,
    noDelay: true,
    session,
  });
}

/**
 * The request slots of one paced connection or worker, `intervalMs` apart.
 * @param {number} intervalMs 0: no pacing
 * @param {number} offsetMs the first slot, from now: spreads the connections' slots over an interval so
 *   that they do not all fire together
 * @returns {() => number} how long to wait before the next request, in ms
 */
function slots(intervalMs, offsetMs) {
  let next = performance.now() + offsetMs - intervalMs;
  return () => {
    if (intervalMs === 0) return 0;
    next += intervalMs;
    const now = performance.now();
    // More than a slot late (a slow response, a busy machine): drop the missed slots instead of sending them
    // in a burst, which would raise the rate above the one asked for.
    if (next < now - intervalMs) next = now;
    return Math.max(0, next - now);
  };
}

/** Grows as needed; latencies in milliseconds. */
class Samples {
  #data = new Float64Array(4096);
  length = 0;
  /** @param {number} value */
  push(value) {
    if (this.length === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.length++] = value;
  }
  toArray() {
    return this.#data.slice(0, this.length);
  }
}

/**
 * Runs one load phase.
 * @param {LoadSpec} spec
 * @param {(event: 'window-start' | 'window-end') => void} [onWindow] called when measuring starts and ends
 * @returns {Promise<LoadResult>}
 */
export async function runLoad(spec, onWindow = () => {}) {
  const { target, mode } = spec;
  const connections = mode === 'sequential' ? 1 : (spec.connections ?? 1);
  const keepAliveBytes = requestBytes(target, false);
  const closeBytes = requestBytes(target, true);
  const intervalMs = spec.rate && mode !== 'sequential' ? (connections * 1000) / spec.rate : 0;
  const samples = new Samples();
  const errorKinds = /** @type {Record<string, number>} */ ({});
  const serials = new Set();
  let errors = 0;
  let requests = 0;
  let completed = 0;
  let measuring = false;
  let running = true;
  const fail = (/** @type {string} */ kind) => {
    errors++;
    errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  };
  /** @param {number} status @param {number} started */
  const done = (status, started) => {
    if (status < 200 || status >= 300) {
      fail(`status_${status}`);
      return;
    }
    completed++;
    if (!measuring) return;
    requests++;
    samples.push(performance.now() - started);
    if (spec.maxRequests !== undefined && requests >= spec.maxRequests) running = false;
  };

  /**
   * A keep-alive connection: reconnects when the server closes it, which counts as an error only mid-request.
   * @param {number} index
   */
  const keepAlive = (index) =>
    new Promise((resolve) => {
      const parser = new ResponseParser();
      const nextSlot = slots(intervalMs, (intervalMs * index) / connections);
      let started = 0;
      let inFlight = false;
      let socket;
      /** Sends at the next slot, on the socket of now (a reconnect in between brings its own send). */
      const paced = () => {
        const wait = nextSlot();
        if (wait === 0) return send();
        const current = socket;
        setTimeout(() => {
          if (current !== socket || current.destroyed) return;
          if (running) send();
          else current.destroy();
        }, wait);
      };
      const open = () => {
        parser.reset();
        socket = connect(target);
        socket.on('data', (chunk) => {
          let status;
          try {
            status = parser.push(chunk);
          } catch (err) {
            fail(`protocol: ${/** @type {Error} */ (err).message}`);
            socket.destroy();
            return;
          }
          if (status === 0) return;
          inFlight = false;
          done(status, started);
          if (running) paced();
          else socket.destroy();
        });
        socket.on('error', (err) => {
          if (inFlight) fail(/** @type {NodeJS.ErrnoException} */ (err).code ?? err.message);
          inFlight = false;
        });
        socket.on('close', (hadError) => {
          if (inFlight) fail('closed_mid_request');
          inFlight = false;
          if (running) setTimeout(open, hadError ? RETRY_MS : 0);
          else resolve(undefined);
        });
        paced();
      };
      const send = () => {
        inFlight = true;
        started = performance.now();
        socket.write(keepAliveBytes);
      };
      open();
    });

  /**
   * A worker opening one connection per request.
   * @param {number} index
   */
  const newConnections = async (index) => {
    const nextSlot = slots(intervalMs, (intervalMs * index) / connections);
    /** @type {Buffer | undefined} */
    let session;
    while (running) {
      const wait = nextSlot();
      if (wait > 0) await delay(wait);
      if (!running) break;
      const ok = await new Promise((resolve) => {
        const parser = new ResponseParser();
        const started = performance.now();
        const socket = connect(target, spec.resumeSessions ? session : undefined);
        if (spec.resumeSessions) socket.on('session', (s) => (session = s));
        let answered = false;
        const finish = (/** @type {boolean} */ result) => {
          if (answered) return;
          answered = true;
          socket.destroy();
          resolve(result);
        };
        if (spec.recordServerSerials && target.tls) {
          socket.once('secureConnect', () => {
            const cert = /** @type {import('node:tls').TLSSocket} */ (socket).getPeerX509Certificate();
            if (cert) serials.add(cert.serialNumber);
          });
        }
        socket.on('data', (chunk) => {
          let status;
          try {
            status = parser.push(chunk);
          } catch (err) {
            fail(`protocol: ${/** @type {Error} */ (err).message}`);
            finish(false);
            return;
          }
          if (status === 0) return;
          done(status, started);
          finish(true);
        });
        socket.on('error', (err) => {
          if (!answered) fail(/** @type {NodeJS.ErrnoException} */ (err).code ?? err.message);
          finish(false);
        });
        socket.on('close', () => {
          if (!answered) fail('closed_before_response');
          finish(false);
        });
        socket.write(closeBytes);
      });
      if (!ok) await delay(RETRY_MS);
    }
  };

  const worker = mode === 'newconn' ? newConnections : keepAlive;
  const all = Promise.all(Array.from({ length: connections }, (_, i) => worker(i)));
  await delay(spec.warmupMs);
  measuring = true;
  onWindow('window-start');
  const windowStart = performance.now();
  await Promise.race([delay(spec.durationMs), all]);
  const windowMs = performance.now() - windowStart;
  measuring = false;
  onWindow('window-end');
  running = false;
  await Promise.race([all, delay(2000)]);
  return {
    mode,
    requests,
    completed,
    errors,
    errorKinds,
    windowMs,
    rps: requests / (windowMs / 1000),
    latenciesMs: samples.toArray(),
    serials: [...serials],
  };
}
