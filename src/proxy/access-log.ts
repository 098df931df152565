// The access line: one `authz` line per request that reached a decision, written once the exchange is over
// (the response ended, or was cut), Envoy-style: who called and what the rules said, then what the caller
// got (status, body bytes both ways, total time and time to the app's answer), the request id, and how the
// exchange ended when it did not end normally. Every decision is logged, denials included: they are the
// audit trail of authenticated, accountable callers (a flood of them is what rate limits are for), so they
// are not subject to the budget of rejection-log.ts, which bounds what unauthenticated peers can make us
// write. Requests refused before a decision (a malformed head, a bad token or key) have their own lines.
// Also the request metrics, at the same end.
import type { Socket } from 'node:net';
import { describePeer, type PeerIdentity } from '../authn/identity.js';
import type { Decision } from '../authz/policy.js';
import { jsonString, type Logger, writeSerializedLine } from '../log.js';
import { lingeringSince } from './lingering-close.js';
import type { ProxyMetrics } from './proxy-metrics.js';
import { newRequestId, type RequestTrace, traceIdOf } from './request-id.js';

/** How an exchange ended, when not normally. */
export type Outcome =
  /** The caller closed or reset its connection (HTTP/2: its stream) before the end of the response. */
  | 'caller_reset'
  /** The caller stalled: its body (--request-body-timeout, --request-body-min-rate) or its reading (--response-write-timeout). */
  | 'caller_timeout'
  /** The app could not be reached, sent a response that could not be carried, or cut its response. */
  | 'upstream_error'
  /** The app sent no response headers within --upstream-timeout. */
  | 'upstream_timeout'
  /** A WebSocket tunnel passed --tunnel-idle-timeout with no byte either way. */
  | 'idle_timeout'
  /** Still under way when --drain-timeout ran out. */
  | 'drain_timeout';

export type ExchangeProtocol = 'http/1.1' | 'h2' | 'websocket';

/** What the exchanges of one listener share. */
export interface AccessLog {
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  /** The drain timeout ran out and every connection was cut. */
  cutByDrain: boolean;
}

/** What a forwarder reports about the exchange it carries. */
export interface ExchangeProgress {
  /** The request id (`x-request-id`). */
  readonly id: string;
  /** Request body bytes read from the caller (and sent on to the app). */
  bytesIn: number;
  /** Response body bytes written to the caller. */
  bytesOut: number;
  /** What the caller got, where the forwarder writes the status line itself (WebSocket). */
  status: number;
  /** The app's response headers arrived. */
  reached(): void;
  /**
   * WebSocket: the response head is written (with `body` bytes of body after it in the same write); what
   * the caller's socket writes from now on is body (the tunnel's bytes).
   */
  headWritten(body?: number): void;
  /** The exchange did not complete normally: the first outcome reported is the one logged. */
  fail(outcome: Outcome): void;
}

const MAX_LOGGED_PATH = 256;

/** The path for the log: no query string (it may carry secrets), bounded length. */
export function auditPath(url: string | undefined): string {
  if (url === undefined) return '';
  const query = url.indexOf('?');
  const end = query === -1 ? url.length : query;
  return end > MAX_LOGGED_PATH ? `${url.slice(0, MAX_LOGGED_PATH)}...` : query === -1 ? url : url.slice(0, end);
}

/**
 * Milliseconds to the microsecond, as JSON text: what `String(Math.round(value * 1000) / 1000)` prints ("0.12",
 * "3", "15.007"), from two integers. V8 turns a fraction into text by its shortest-double algorithm, which was
 * a sixth of the access line's cost (issue 17, `perf`); integers are cheap. `value` is a duration (≥ 0).
 */
export function msText(value: number): string {
  const us = Math.round(value * 1000);
  // Past 10^15 µs (31 years) the integers would not be exact; no duration gets there.
  if (!(us >= 0 && us < 1e15)) return String(us / 1000);
  const whole = Math.floor(us / 1000);
  let frac = us - whole * 1000;
  if (frac === 0) return `${whole}`;
  let digits = 3;
  while (frac % 10 === 0) {
    frac /= 10;
    digits--;
  }
  const text = `${frac}`;
  return `${whole}.${text.length < digits ? '0'.repeat(digits - text.length) + text : text}`;
}

/**
 * The line's first members for a caller (`"event":"authz","peer":...,"auth":...`), made once per identity: a
 * connection's requests share its identity (mTLS), and so do the requests of one cached token.
 */
const peerMembersOf = new WeakMap<PeerIdentity, string>();

function peerMembers(identity: PeerIdentity): string {
  let members = peerMembersOf.get(identity);
  if (members === undefined) {
    members = `"event":"authz","peer":${jsonString(describePeer(identity))},"auth":"${identity.method}"`;
    peerMembersOf.set(identity, members);
  }
  return members;
}

/** The last caller address quoted: a connection's requests come one after another from the same one. */
let lastRemote = '';
let lastRemoteJson = '""';

function remoteJson(remote: string): string {
  if (remote !== lastRemote) {
    lastRemote = remote;
    lastRemoteJson = jsonString(remote);
  }
  return lastRemoteJson;
}

/**
 * The members from `method` to `protocol`, and what they were made of: the last line's are used again when all of
 * it is the same (a keep-alive connection's requests mostly repeat their line and their decision), so that the
 * path is not searched and quoted, nor the rule quoted, once per request. Compared by value, every input.
 */
const lastRequest = {
  method: '',
  url: undefined as string | undefined,
  allow: false,
  rule: undefined as string | undefined,
  reason: undefined as string | undefined,
  refused: false,
  protocol: '' as ExchangeProtocol | '',
  members: '',
};

function requestMembers(
  method: string,
  url: string | undefined,
  decision: Decision,
  refused: boolean,
  protocol: ExchangeProtocol,
): string {
  const last = lastRequest;
  const reason = decision.allow ? undefined : decision.reason;
  if (
    url === last.url &&
    method === last.method &&
    decision.allow === last.allow &&
    decision.rule === last.rule &&
    reason === last.reason &&
    refused === last.refused &&
    protocol === last.protocol
  )
    return last.members;
  let members = `,"method":${jsonString(method)},"path":${jsonString(auditPath(url))}`;
  members += decision.allow ? ',"decision":"allow"' : ',"decision":"deny"';
  // A denial let through by --policy-mode dry-run.
  if (!decision.allow && !refused) members += ',"dry_run":true';
  if (decision.rule !== undefined) members += `,"rule":${jsonString(decision.rule)}`;
  if (reason !== undefined) members += `,"reason":${jsonString(reason)}`;
  members += `,"protocol":"${protocol}"`;
  last.method = method;
  last.url = url;
  last.allow = decision.allow;
  last.rule = decision.rule;
  last.reason = reason;
  last.refused = refused;
  last.protocol = protocol;
  last.members = members;
  return members;
}

/** The decision part of an admission, as admission.ts returns it. */
export interface Judged {
  readonly admitted: boolean;
  readonly identity?: PeerIdentity;
  /** The decision as the rules made it (dry-run: the denial that was let through). */
  readonly judged?: Decision;
}

/** One request, from its head's arrival to the end of its response. */
export class Exchange implements ExchangeProgress, RequestTrace {
  readonly id: string;
  /** The trace-id of the caller's valid `traceparent` (lower-case hex, checked), logged as `trace_id`. */
  readonly traceId: string | undefined;
  readonly traced: boolean;
  bytesIn = 0;
  bytesOut = 0;
  status = 0;
  private readonly started = performance.now();
  /** performance.now() when the app's response headers arrived; 0: never. */
  private reachedAt = 0;
  private outcome: Outcome | undefined = undefined;
  private identity: PeerIdentity | undefined = undefined;
  private decision: Decision | undefined = undefined;
  private refused = false;
  private ended = false;
  /** Set when the exchange ends: what the caller got, and how long it all took. */
  private endStatus = 0;
  private totalMs = 0;
  /** WebSocket: the caller's socket, whose counters give the bytes each way, and their values before the body. */
  private socket: Socket | undefined = undefined;
  private readBase = 0;
  private writeBase = 0;

  constructor(
    private readonly access: AccessLog,
    private readonly protocol: ExchangeProtocol,
    private readonly method: string | undefined,
    private readonly url: string | undefined,
    private readonly remote: string | undefined,
    traceparent: string | string[] | undefined,
  ) {
    // The id is always ours: a trace-id is the caller's choice and shared by every request of its trace
    // (fan-out, retries), so it is logged beside the id (`trace_id`), never as it.
    this.traceId = traceIdOf(traceparent);
    this.traced = this.traceId !== undefined;
    this.id = newRequestId();
  }

  /**
   * The admission's decision (none for a refusal before one: then no access line). A decision that came
   * after the caller left (a token checked against a slow issuer) is logged now, with its outcome.
   */
  judged(admission: Judged): void {
    if (admission.judged === undefined) return;
    this.identity = admission.identity;
    this.decision = admission.judged;
    this.refused = !admission.admitted;
    if (this.ended) this.writeLine();
  }

  reached(): void {
    this.reachedAt = performance.now();
  }

  /**
   * WebSocket: the bytes each way are counted by the caller's socket (read when the exchange ends).
   * `readBase`: what it had read before the body (the request head; not what was read past it).
   */
  countSocket(socket: Socket, readBase: number): void {
    this.socket = socket;
    this.readBase = readBase;
    this.writeBase = socket.bytesWritten;
  }

  headWritten(body = 0): void {
    if (this.socket) this.writeBase = this.socket.bytesWritten - body;
  }

  fail(outcome: Outcome): void {
    this.outcome ??= outcome;
  }

  /**
   * The exchange is over: counts it, and writes its access line. `status`: what the caller got (0:
   * nothing); `cut`: the response did not reach its end.
   */
  end(status: number, cut: boolean): void {
    if (this.ended) return;
    this.ended = true;
    let totalMs = performance.now() - this.started;
    if (this.socket) {
      // A socket that lingered (a refused or declined upgrade) read the caller's last bytes only to drop them:
      // the exchange ended when it began to.
      const since = lingeringSince(this.socket);
      this.bytesIn = (since?.bytesRead ?? this.socket.bytesRead) - this.readBase;
      this.bytesOut = this.socket.bytesWritten - this.writeBase;
      if (since) totalMs = since.at - this.started;
    }
    this.endStatus = status;
    this.totalMs = totalMs;
    if (cut && this.outcome === undefined) this.outcome = this.access.cutByDrain ? 'drain_timeout' : 'caller_reset';
    const upstreamMs = this.reachedAt === 0 ? undefined : this.reachedAt - this.started;
    // Upgrades were never counted as requests (their 101 is not an answer).
    if (status !== 0 && this.protocol !== 'websocket')
      this.access.metrics.request(
        status,
        totalMs / 1000,
        upstreamMs === undefined ? undefined : upstreamMs / 1000,
        this.identity?.method ?? 'none',
      );
    this.writeLine();
  }

  /** The access line, once the exchange has ended and the decision is known. */
  private writeLine(): void {
    const { log } = this.access;
    const status = this.endStatus;
    const upstreamMs = this.reachedAt === 0 ? undefined : this.reachedAt - this.started;
    const decision = this.decision;
    // No decision (refused before one: its own line says why), or the level is off (`--log-level warn`).
    if (decision === undefined || !log.isLevelEnabled('info')) return;
    // Serialized here, not by pino: its walk over an ~18-field object cost more than the rest of the line
    // (issue 17: the line must stay within 10% of a request's CPU). Strings that come from the caller or
    // the rules are quoted by jsonString (JSON.stringify's escaping); the rest are numbers and words of ours.
    let line = peerMembers(this.identity as PeerIdentity);
    line += requestMembers(this.method ?? '', this.url, decision, this.refused, this.protocol);
    line += `,"status":${status},"bytes_in":${this.bytesIn},"bytes_out":${this.bytesOut}`;
    line += `,"duration_ms":${msText(this.totalMs)}`;
    if (upstreamMs !== undefined) line += `,"upstream_ms":${msText(upstreamMs)}`;
    line += `,"request_id":"${this.id}"`;
    if (this.traceId !== undefined) line += `,"trace_id":"${this.traceId}"`;
    if (this.remote !== undefined) line += `,"remote":${remoteJson(this.remote)}`;
    if (this.outcome !== undefined) line += `,"outcome":"${this.outcome}"`;
    writeSerializedLine(log, 'info', line, 'authorization decision');
  }
}
