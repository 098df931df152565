// The logger: pino JSON lines on stdout. Secrets never reach a log line: authorization headers, cookies
// and key material are redacted by path, and we never log request bodies. A reader of stdout that goes
// away (EPIPE, `| head -1`) stops the logging, never the process: no crash, no shutdown waiting on it.
import { writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

export type { Logger };

/**
 * Characters that could end or rewrite a line on a terminal or in a line-based collector: C0 controls (LF,
 * CR, ESC…), DEL, C1 controls (NEL, CSI…) and the Unicode line and paragraph separators.
 */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const SHORT_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** One line, whatever a field holds: every unprintable character as `\n`, `\r`, `\t` or `\uXXXX`. */
export function escapeUnprintable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A string `pretty` writes as it is: one that could not be read as more than one field. One with `=` or `"` (a
 * token's unverified `sub` of `bob peer=spiffe://… decision=allow`) is quoted, as JSON: what looks like a field
 * inside it is then plainly part of the value.
 */
const PLAIN_VALUE = /^[^="]*$/;

/**
 * `pretty`: one human line per entry (time, level, message, then the fields), from the same JSON. JSON
 * escapes newlines; this format would not, so every line is escaped: a token claim or a path with a
 * newline cannot forge a log line.
 */
export function prettyDestination(out: { write(text: string): unknown } = stdoutDestination()): NodeJS.WritableStream {
  let pending = '';
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      pending += chunk.toString();
      let nl = pending.indexOf('\n');
      while (nl !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        try {
          const { time, level, msg, ...fields } = JSON.parse(line) as Record<string, unknown>;
          delete fields.name;
          const rest = Object.entries(fields)
            .map(([k, v]) => `${k}=${typeof v === 'string' && PLAIN_VALUE.test(v) ? v : JSON.stringify(v)}`)
            .join(' ');
          const text = `${String(time).slice(11, 23)} ${String(level).toUpperCase().padEnd(5)} ${String(msg)} ${rest}`;
          out.write(`${escapeUnprintable(text)}\n`);
        } catch {
          out.write(`${escapeUnprintable(line)}\n`);
        }
        nl = pending.indexOf('\n');
      }
      done();
    },
  });
}

let guarded = false;

/** A stalled reader (or an async stream that cannot keep up) gets at most this much queued; the rest is dropped. */
const MAX_UNWRITTEN_BYTES = 4 * 1024 * 1024;

/** Lines wait at most this long for company before they are written... */
const BATCH_MS = 20;
/** ...or until this much is waiting. */
const BATCH_BYTES = 16 * 1024;
/** A batch's bytes: BATCH_BYTES and room for the line that crosses it (up to 3 bytes per UTF-16 unit). */
const BATCH_CAPACITY = 32 * 1024;
/**
 * The most a write(2) to a pipe puts in whole, never interleaved with another writer's (POSIX PIPE_BUF; 4096 on
 * Linux). With `--workers`, every process writes to the one stdout: a batch larger than this could be cut by
 * another process's, and a line in two halves with another's between them is two broken lines. libuv makes the
 * pipe non-blocking, and Node's stream joins writes that wait into one writev, which the kernel may cut too: so
 * such a process writes one piece at a time, the next when the last has gone (a review: with 4 KiB pieces but
 * joined writes, 1,036 of 60,217 lines were still spliced under a slow reader).
 */
export const ATOMIC_WRITE_BYTES = 4096;

/**
 * Lines leave in batches: one write when 16 KiB are waiting or 20 ms after the first of them, whichever comes
 * first (and at exit, and before telling another process anything they must precede). stdout on a file or a
 * pipe is synchronous on Linux, so a write per line cost every request a write(2) for its access line, and
 * one per event-loop turn still one per one or two requests under load. Nothing waits on the log: lines that
 * would queue beyond MAX_UNWRITTEN_BYTES are dropped and counted.
 *
 * A line is copied into the batch's bytes as it comes, never held as a string: waiting strings outlived a
 * young-generation GC or two under load and were promoted, so the old generation grew by the access lines
 * until a full GC, which V8 puts off for hundreds of MB (issue 17: the soak's RSS rose 22 MB a minute).
 */
export class BatchedLines {
  /** Lines dropped because the reader fell behind. */
  dropped = 0;
  private batch: Buffer | undefined;
  private used = 0;
  private lines = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Each write at most this many bytes, cut at line ends (a longer line alone), one at a time: ATOMIC_WRITE_BYTES. */
  maxWriteBytes = Infinity;
  /** Pieces waiting for the one being written (maxWriteBytes set), and their bytes. */
  private pieces: Buffer[] = [];
  private piecesBytes = 0;
  private writing = false;
  /** Who waits for the pieces to be written (whenWritten). */
  private waiters: (() => void)[] = [];

  /** `fd`: the descriptor `out` writes to, for flushAtExit (stdout's 1). */
  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly fd?: number,
  ) {}

  write(text: string): boolean {
    const worst = text.length * 3;
    if (worst > BATCH_CAPACITY) {
      // A line bigger than a batch (a long error): after what waits, on its own.
      this.flush();
      this.send(Buffer.from(text), 1);
      return true;
    }
    if (this.batch !== undefined && this.used + worst > BATCH_CAPACITY) this.flush();
    this.batch ??= Buffer.allocUnsafe(BATCH_CAPACITY);
    this.used += this.batch.write(text, this.used, 'utf8');
    this.lines++;
    if (this.used >= BATCH_BYTES) this.flush();
    // Unref'd: a process with nothing else to do exits, and its 'exit' handler writes what is left.
    else this.timer ??= setTimeout(this.flush, BATCH_MS).unref();
    return true;
  }

  /** Writes what is pending now (also called at exit, so that no line logged before it is lost). */
  readonly flush = (): void => {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.batch === undefined || this.lines === 0) return;
    // A new batch next time: the stream may still hold this one (an async pipe elsewhere than Linux).
    const bytes = this.batch.subarray(0, this.used);
    const lines = this.lines;
    this.batch = undefined;
    this.used = 0;
    this.lines = 0;
    this.send(bytes, lines);
  };

  // Not `emit`: pino calls a destination's emit("message", ...) when it has one.
  private send(bytes: Buffer, lines: number): void {
    if ((this.out as Writable).writableLength + this.piecesBytes > MAX_UNWRITTEN_BYTES) {
      this.dropped += lines;
      return;
    }
    if (this.maxWriteBytes === Infinity) {
      this.out.write(bytes);
      return;
    }
    for (let start = 0; start < bytes.length;) {
      let end = start + this.maxWriteBytes;
      if (end >= bytes.length) end = bytes.length;
      else {
        // After the last line end that fits; a line longer than a write on its own, to its end.
        const nl = bytes.lastIndexOf(0x0a, end - 1);
        end = nl >= start ? nl + 1 : bytes.indexOf(0x0a, end) + 1 || bytes.length;
      }
      this.pieces.push(bytes.subarray(start, end));
      this.piecesBytes += end - start;
      start = end;
    }
    if (!this.writing) this.nextPiece();
  }

  /** Resolves once every piece handed to the stream so far has been written (or the stream failed). */
  whenWritten(): Promise<void> {
    if (!this.writing && this.pieces.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * At exit nothing asynchronous runs again: what waits is written now, piece by piece (each still whole lines
   * of at most maxWriteBytes), to `fd`. A reader that does not take it (EAGAIN) loses the rest.
   */
  readonly flushAtExit = (): void => {
    this.flush();
    for (let piece = this.pieces.shift(); piece !== undefined; piece = this.pieces.shift()) {
      try {
        writeSync(this.fd ?? -1, piece);
      } catch {
        break;
      }
    }
    this.pieces = [];
    this.piecesBytes = 0;
  };

  private nextPiece(): void {
    const piece = this.pieces.shift();
    if (piece === undefined) {
      for (const resolve of this.waiters.splice(0)) resolve();
      return;
    }
    this.piecesBytes -= piece.length;
    this.writing = true;
    this.out.write(piece, this.pieceWritten);
  }

  private readonly pieceWritten = (err?: Error | null): void => {
    this.writing = false;
    if (err) {
      // The reader is gone: what waits is lost, as it would be in Node's own stream.
      this.pieces = [];
      this.piecesBytes = 0;
    }
    this.nextPiece();
  };
}

let stdoutLines: BatchedLines | undefined;
let stdoutShared = false;

/**
 * stdout is written by other processes too (`--workers`: the primary and every worker): from now on each write
 * is whole lines of at most ATOMIC_WRITE_BYTES, so that no two processes' lines are spliced.
 */
export function shareStdoutLines(): void {
  stdoutShared = true;
  if (stdoutLines) stdoutLines.maxWriteBytes = ATOMIC_WRITE_BYTES;
}

/** Writes the batched stdout lines now: before telling another process something they must precede. */
export function flushStdoutLines(): void {
  stdoutLines?.flush();
}

/** Log lines this process dropped because stdout's reader fell behind (a metric). */
export function droppedLogLines(): number {
  return stdoutLines?.dropped ?? 0;
}

/**
 * stdout for the log, batched (above). Node's own stream, not pino's SonicBoom: on a pipe it writes without
 * blocking, and it never retries a write that failed (SonicBoom's exit-time flushSync retries an EPIPE
 * forever, so `exit()` never returned). A write error is swallowed here: the log is lost, the process
 * carries on.
 */
export function stdoutDestination(): BatchedLines {
  if (!guarded) {
    guarded = true;
    process.stdout.on('error', () => {});
    process.stderr.on('error', () => {});
  }
  if (!stdoutLines) {
    const lines = new BatchedLines(process.stdout, 1);
    if (stdoutShared) lines.maxWriteBytes = ATOMIC_WRITE_BYTES;
    stdoutLines = lines;
    process.on('exit', lines.flushAtExit);
  }
  return stdoutLines;
}

/**
 * Resolves once everything written to `out` so far has left the process, it broke, or `timeoutMs` passed,
 * whichever comes first: a shutdown waits for its last log lines, but never on a stalled or vanished reader.
 */
export function logWritten(timeoutMs: number, out: NodeJS.WritableStream = process.stdout): Promise<void> {
  if (out === process.stdout) flushStdoutLines();
  const stream = out as Writable;
  // With --workers, pieces may still wait in the batcher for the stream (BatchedLines.send).
  const pieces = out === process.stdout ? stdoutLines?.whenWritten() : undefined;
  if (pieces === undefined && (stream.destroyed || stream.writableLength === 0)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stream.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    stream.once('close', done);
    const streamWritten = () => {
      if (stream.destroyed || stream.writableLength === 0) return done();
      // Writes complete in order: this callback runs once every earlier chunk has been written (or failed).
      stream.write('', () => done());
    };
    if (pieces) void pieces.then(streamWritten);
    else streamWritten();
  });
}

/** A character JSON.stringify escapes: `"`, `\\`, C0 controls, and surrogates (escaped when lone). */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * A string as a JSON value, exactly as JSON.stringify writes it, at about half its cost for the strings of
 * an access line (a path, an address, a SPIFFE ID): those need no escaping, and only quotes are added.
 */
export function jsonString(text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`;
}

const { lsCacheSym, timeSym, chindingsSym, streamSym, endSym, needsMetadataGsym, mixinSym, hooksSym } = pino.symbols;

/** What writeSerializedLine needs of a logger: fixed when pino makes the logger (its bindings are not). */
interface LineParts {
  /** undefined: the logger has a mixin, a stream hook or a multistream destination (the ordinary call). */
  readonly stream: { write(text: string): unknown } | undefined;
  /** The line's start for each level: `{"level":"info"`. */
  readonly levels: Readonly<Record<number, string>>;
  readonly time: (this: Logger) => string;
  readonly end: string;
}

/** Read once per logger: a pino logger's symbol-keyed properties are slow to look up (~0.3 µs per line). */
const lineParts = new WeakMap<Logger, LineParts>();

function linePartsOf(log: Logger): LineParts {
  let found = lineParts.get(log);
  if (found === undefined) {
    const parts = log as unknown as Record<symbol, unknown>;
    const stream = parts[streamSym] as { write(text: string): unknown } & Record<symbol, unknown>;
    const hooks = parts[hooksSym] as { streamWrite?: unknown } | undefined;
    const direct = !parts[mixinSym] && !hooks?.streamWrite && !stream[needsMetadataGsym];
    found = {
      stream: direct ? stream : undefined,
      levels: parts[lsCacheSym] as Record<number, string>,
      time: parts[timeSym] as (this: Logger) => string,
      end: parts[endSym] as string,
    };
    lineParts.set(log, found);
  }
  return found;
}

/**
 * Writes one line whose fields the caller serialized itself: `members` is `"name":value,...` (valid JSON
 * members, the values escaped as JSON.stringify escapes them). The line is the one pino writes for the same
 * fields (level, time, the logger's bindings such as `pid`, the fields, `msg`;
 * test/log-serialized-line.test.ts), without pino's walk over an object: for the per-request access line,
 * ~18 fields, that walk cost more than all the rest of the line. Never for fields that may hold secrets:
 * there is no redaction here. A logger with a mixin, a stream hook or a multistream destination gets the
 * ordinary call. The parts are read through pino.symbols, pino's documented door to them for integrations.
 */
export function writeSerializedLine(log: Logger, level: 'info' | 'warn', members: string, msg: string): void {
  if (!log.isLevelEnabled(level)) return;
  const { stream, levels, time, end } = linePartsOf(log);
  if (stream === undefined) {
    log[level](JSON.parse(`{${members}}`) as object, msg);
    return;
  }
  // The bindings are read each time: pino's setBindings() changes them.
  const bindings = (log as unknown as Record<symbol, string>)[chindingsSym];
  if (msg !== lastMsg) {
    lastMsg = msg;
    lastMsgJson = jsonString(msg);
  }
  stream.write(`${levels[log.levels.values[level]]}${time.call(log)}${bindings},${members},"msg":${lastMsgJson}${end}`);
}

/** The last message quoted (the access line's is always the same): quoted once, not once per line. */
let lastMsg = '';
let lastMsgJson = '""';

let timeMs = Number.NaN;
let timeMember = '';

/**
 * pino's `isoTime` (`,"time":"2025-01-01T00:00:00.000Z"`), formatted once per millisecond: toISOString costs
 * ~0.7 µs, a sixth of the access line's budget, and lines under load come many to a millisecond.
 */
export function isoTime(): string {
  const now = Date.now();
  if (now !== timeMs) {
    timeMs = now;
    timeMember = `,"time":"${new Date(now).toISOString()}"`;
  }
  return timeMember;
}

export function createLogger(level: LogLevel, destination?: { write(text: string): unknown }): Logger {
  return pino(
    {
      level,
      base: { name: 'spiffe-sidecar' },
      timestamp: isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['headers.authorization', 'headers.cookie', 'headers["proxy-authorization"]', 'key', 'keyPem', 'token'],
        censor: '[redacted]',
      },
    },
    destination ?? stdoutDestination(),
  );
}
