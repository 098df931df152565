// The pretty log format writes one line per entry whatever its fields hold (issue 15, finding 5): a
// newline, a carriage return, an escape sequence or a Unicode line separator in a message or a field is
// written escaped, so it can neither forge a log line nor rewrite the terminal.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, prettyDestination } from '../src/log.js';

/** Logs through the real pretty destination and returns what reached "stdout". */
async function prettyOutput(write: (log: ReturnType<typeof createLogger>) => void): Promise<string> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (d: Buffer) => {
    text += d.toString();
  });
  const destination = prettyDestination(out);
  const log = createLogger('info', destination);
  write(log);
  await new Promise<void>((resolve) => destination.end(resolve));
  return text;
}

describe('prettyDestination', () => {
  it('a forged line in a field stays inside its own line, escaped', async () => {
    const forged = 'pipeline\n12:00:00.000 INFO  authorization decision decision=allow peer=spiffe://example.org/admin';
    const text = await prettyOutput((log) =>
      log.info({ event: 'authz', peer: `ci#${forged}`, path: '/a\r\u001b[2K/b' }, 'authorization decision'),
    );
    expect(text.split('\n')).toHaveLength(2);
    expect(text.endsWith('\n')).toBe(true);
    expect(text).toContain('peer=ci#pipeline\\n12:00:00.000 INFO  authorization decision');
    expect(text).toContain('path=/a\\r\\u001b[2K/b');
  });

  it('the message, nested values, DEL, C1 controls and U+2028/2029 are escaped too', async () => {
    const text = await prettyOutput((log) =>
      log.warn(
        { event: 'x', claims: { sub: 'a\u2028b' }, other: 'c\u2029d\u007fe\u0085f\u009bg', tab: 'h\ti' },
        'one\ntwo',
      ),
    );
    const [line, rest] = text.split('\n');
    expect(rest).toBe('');
    expect(line).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN {2}one\\ntwo /);
    expect(line).toContain('claims={"sub":"a\\u2028b"}');
    expect(line).toContain('other=c\\u2029d\\u007fe\\u0085f\\u009bg');
    expect(line).toContain('tab=h\\ti');
    // eslint-disable-next-line no-control-regex -- finding control characters is the point
    expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
  });

  it('a line that is not JSON is passed through, escaped', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => {
      text += d.toString();
    });
    const destination = prettyDestination(out);
    destination.write('not json\u001b[31m red\n');
    await new Promise<void>((resolve) => destination.end(resolve));
    expect(text).toBe('not json\\u001b[31m red\n');
  });

  it('printable text, non-ASCII letters included, is left alone', async () => {
    const text = await prettyOutput((log) => log.info({ who: 'Zoë 佐藤 ~!' }, 'ok'));
    expect(text).toMatch(/ INFO {2}ok who=Zoë 佐藤 ~!\n$/);
  });
});
