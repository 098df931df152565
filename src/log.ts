// The logger: pino JSON lines on stdout. Secrets never reach a log line: authorization headers, cookies
// and key material are redacted by path, and we never log request bodies.
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

export type { Logger };

/** `pretty`: one human line per entry (time, level, message, then the fields), from the same JSON. */
export function prettyDestination(out: NodeJS.WritableStream = process.stdout): NodeJS.WritableStream {
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
          out.write(`${String(time).slice(11, 23)} ${String(level).toUpperCase().padEnd(5)} ${msg} ${rest}\n`);
        } catch {
          out.write(`${line}\n`);
        }
        nl = pending.indexOf('\n');
      }
      done();
    },
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
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
