// The logger: pino JSON lines on stdout. Secrets never reach a log line: authorization headers, cookies
// and key material are redacted by path, and we never log request bodies. A reader of stdout that goes
// away (EPIPE, `| head -1`) stops the logging, never the process: no crash, no shutdown waiting on it.
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
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
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

/**
 * Lines logged in one turn of the event loop leave in one write. stdout on a file or a pipe is synchronous
 * on Linux, so a write per line would cost every request a write(2) for its audit line; batched, it costs
 * the JSON and a share of one syscall (bench: the audit line went from ~12% to ~2% of a request's CPU).
 * Nothing waits on the log: lines that would queue beyond MAX_UNWRITTEN_BYTES are dropped and counted.
 */
export class BatchedLines {
  /** Lines dropped because the reader fell behind. */
  dropped = 0;
  private pending: string[] = [];
  private scheduled = false;

  constructor(private readonly out: NodeJS.WritableStream) {}

  write(text: string): boolean {
    this.pending.push(text);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
    return true;
  }

  /** Writes what is pending now (also called at exit, so that no line logged before it is lost). */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = [];
    if ((this.out as Writable).writableLength > MAX_UNWRITTEN_BYTES) {
      this.dropped += lines.length;
      return;
    }
    this.out.write(lines.length === 1 ? lines[0] : lines.join(''));
  };
}

let stdoutLines: BatchedLines | undefined;

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
    const lines = new BatchedLines(process.stdout);
    stdoutLines = lines;
    process.on('exit', lines.flush);
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
  if (stream.destroyed || stream.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stream.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    stream.once('close', done);
    // Writes complete in order: this callback runs once every earlier chunk has been written (or failed).
    stream.write('', () => done());
  });
}

const { lsCacheSym, timeSym, chindingsSym, streamSym, endSym, needsMetadataGsym, mixinSym, hooksSym } = pino.symbols;

/**
 * Writes one line whose fields the caller serialized itself: `members` is `"name":value,...` (valid JSON
 * members, the values escaped by JSON.stringify). The line is the one pino writes for the same fields (level,
 * time, the logger's bindings such as `pid`, the fields, `msg`; test/log-serialized-line.test.ts), without
 * pino's walk over an object: for the per-request access line, ~18 fields, that walk cost more than all the
 * rest of the line. Never for fields that may hold secrets: there is no redaction here. A logger with a
 * mixin, a stream hook or a multistream destination gets the ordinary call. The parts are read through
 * pino.symbols, pino's documented door to them for integrations.
 */
export function writeSerializedLine(log: Logger, level: 'info' | 'warn', members: string, msg: string): void {
  if (!log.isLevelEnabled(level)) return;
  const parts = log as unknown as Record<symbol, unknown>;
  const stream = parts[streamSym] as { write(text: string): unknown } & Record<symbol, unknown>;
  const hooks = parts[hooksSym] as { streamWrite?: unknown } | undefined;
  if (parts[mixinSym] || hooks?.streamWrite || stream[needsMetadataGsym]) {
    log[level](JSON.parse(`{${members}}`) as object, msg);
    return;
  }
  const levelPrefix = (parts[lsCacheSym] as Record<number, string>)[log.levels.values[level]];
  const time = (parts[timeSym] as (this: Logger) => string).call(log);
  stream.write(
    `${levelPrefix}${time}${parts[chindingsSym] as string},${members},"msg":${JSON.stringify(msg)}${parts[endSym] as string}`,
  );
}

export function createLogger(level: LogLevel, destination?: { write(text: string): unknown }): Logger {
  return pino(
    {
      level,
      base: { name: 'spiffe-sidecar' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['headers.authorization', 'headers.cookie', 'headers["proxy-authorization"]', 'key', 'keyPem', 'token'],
        censor: '[redacted]',
      },
    },
    destination ?? stdoutDestination(),
  );
}
