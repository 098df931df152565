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
export function prettyDestination(out: NodeJS.WritableStream = stdoutDestination()): NodeJS.WritableStream {
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

/**
 * stdout for the log. Node's own stream, not pino's SonicBoom: on a pipe it writes without blocking, and it
 * never retries a write that failed (SonicBoom's exit-time flushSync retries an EPIPE forever, so `exit()`
 * never returned). A write error is swallowed here: the log is lost, the process carries on.
 */
export function stdoutDestination(): NodeJS.WritableStream {
  if (!guarded) {
    guarded = true;
    process.stdout.on('error', () => {});
    process.stderr.on('error', () => {});
  }
  return process.stdout;
}

/**
 * Resolves once everything written to `out` so far has left the process, it broke, or `timeoutMs` passed,
 * whichever comes first: a shutdown waits for its last log lines, but never on a stalled or vanished reader.
 */
export function logWritten(timeoutMs: number, out: NodeJS.WritableStream = process.stdout): Promise<void> {
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

export function createLogger(level: LogLevel, destination?: NodeJS.WritableStream): Logger {
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
