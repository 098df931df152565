// The pretty log format writes one line per entry whatever its fields hold (issue 15, finding 5): a
// newline, a carriage return, an escape sequence or a Unicode line separator in a message or a field is
// written escaped, so it can neither forge a log line nor rewrite the terminal.
import { spawn } from 'node:child_process';
import { PassThrough, Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { ATOMIC_WRITE_BYTES, BatchedLines, createLogger, prettyDestination } from '../src/log.js';

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
    // Quoted, as every value with `=` or `"`: the forged fields stay inside the one value.
    expect(text).toContain(
      'peer="ci#pipeline\\n12:00:00.000 INFO  authorization decision decision=allow peer=spiffe://example.org/admin"',
    );
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

  it("a value that reads as more fields is quoted: a caller's claim cannot add peer= or decision=", async () => {
    const text = await prettyOutput((log) =>
      log.warn(
        { event: 'token_rejected', presented_sub: 'bob peer=spiffe://example.org/ns/prod/sa/admin decision=allow' },
        'rejected',
      ),
    );
    expect(text).toContain('presented_sub="bob peer=spiffe://example.org/ns/prod/sa/admin decision=allow"');
    // Outside the quoted value, no peer= or decision= field.
    expect(text.replace(/presented_sub="[^"]*"/, '')).not.toMatch(/peer=|decision=/);
    // Plain values stay plain.
    const plain = await prettyOutput((log) => log.info({ event: 'x', peer: 'spiffe://example.org/a' }, 'm'));
    expect(plain).toContain(' peer=spiffe://example.org/a');
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

/** A stdout stand-in that records each write, and can hold them unwritten like a stalled pipe. */
function recordingStream({ stalled = false } = {}) {
  const writes: string[] = [];
  const stream = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _encoding, done) {
      writes.push(chunk.toString());
      if (!stalled) done();
    },
  });
  return { stream, writes };
}

describe('BatchedLines (the log on stdout)', () => {
  it('lines leave in one write 20 ms after the first of them, in order, or at once when 16 KiB wait', () => {
    vi.useFakeTimers();
    try {
      const { stream, writes } = recordingStream();
      const log = createLogger('info', new BatchedLines(stream));
      for (let i = 0; i < 50; i++) log.info({ event: 'authz', n: i }, 'authorization decision');
      vi.advanceTimersByTime(19);
      expect(writes).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(writes).toHaveLength(1);
      expect(
        writes[0]
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l).n),
      ).toEqual([...Array(50).keys()]);
      // 16 KiB waiting: written at once, without waiting for the timer.
      for (let i = 0; i < 200; i++) log.info({ event: 'authz', n: i, pad: 'x'.repeat(100) }, 'authorization decision');
      expect(writes.length).toBeGreaterThanOrEqual(2);
      const before = writes.length;
      vi.advanceTimersByTime(20);
      expect(writes.length).toBeLessThanOrEqual(before + 1);
      const all = writes.slice(1).join('').trim().split('\n');
      expect(all.map((l) => JSON.parse(l).n)).toEqual([...Array(200).keys()]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('flush() writes what is pending at once (the exit path)', () => {
    const { stream, writes } = recordingStream();
    const lines = new BatchedLines(stream);
    createLogger('info', lines).info({ event: 'stopping' }, 'stopping');
    lines.flush();
    expect(JSON.parse(writes[0])).toMatchObject({ event: 'stopping' });
  });

  it('drops and counts lines once more than 4 MiB wait unwritten, instead of queueing them', async () => {
    const { stream, writes } = recordingStream({ stalled: true });
    const lines = new BatchedLines(stream);
    const big = 'x'.repeat(1024 * 1024);
    // The first write is taken and never completes; the next three queue behind it: just over 4 MiB unwritten.
    for (let i = 0; i < 4; i++) {
      lines.write(`${big}\n`);
      lines.flush();
    }
    expect(lines.dropped).toBe(0);
    lines.write('one\n');
    lines.write('two\n');
    lines.flush();
    expect(lines.dropped).toBe(2);
    expect(writes).toHaveLength(1);
    await nextTurn();
  });
});

describe('BatchedLines sharing stdout with other processes (--workers)', () => {
  it('writes whole lines, 4 KiB at most (a longer line alone), one write at a time, every byte in order', async () => {
    const writes: Buffer[] = [];
    let outstanding = 0;
    let mostOutstanding = 0;
    // A stream whose writes complete later, as a pipe's do when its reader is behind.
    const stream = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _encoding, done) {
        outstanding++;
        mostOutstanding = Math.max(mostOutstanding, outstanding);
        writes.push(Buffer.from(chunk));
        setImmediate(() => {
          outstanding--;
          done();
        });
      },
    });
    const lines = new BatchedLines(stream);
    lines.maxWriteBytes = ATOMIC_WRITE_BYTES;
    const sent: string[] = [];
    for (let i = 0; i < 400; i++) {
      const size = i === 57 ? 10_000 : 40 + ((i * 7919) % 900);
      const line = `${JSON.stringify({ i, pad: 'x'.repeat(size) })}\n`;
      sent.push(line);
      lines.write(line);
    }
    lines.flush();
    await expect.poll(() => Buffer.concat(writes).length).toBe(Buffer.byteLength(sent.join('')));
    expect(Buffer.concat(writes).toString()).toBe(sent.join(''));
    for (const w of writes) {
      expect(w.at(-1)).toBe(0x0a);
      // Over 4 KiB only as one line on its own.
      if (w.length > ATOMIC_WRITE_BYTES) expect(w.indexOf(0x0a)).toBe(w.length - 1);
    }
    expect(writes.some((w) => w.length > ATOMIC_WRITE_BYTES)).toBe(true);
    // Never two at once: Node's stream would join waiting writes into one writev, which the kernel may cut.
    expect(mostOutstanding).toBe(1);
  });
});

describe('BatchedLines sharing stdout: nothing is lost at exit', () => {
  // A child that shares stdout as a worker does logs 300 lines (~27 KB: several 4 KiB pieces, most of them still
  // waiting in the batcher) and exits, after logWritten as a shutdown does, or at once as a fatal error does.
  const child = (exit: 'after-logWritten' | 'at-once') =>
    new Promise<string>((resolve, reject) => {
      const log = new URL('../dist/log.js', import.meta.url).href;
      const script = `
        import { logWritten, shareStdoutLines, stdoutDestination } from ${JSON.stringify(log)};
        shareStdoutLines();
        const lines = stdoutDestination();
        for (let i = 0; i < 300; i++) lines.write(JSON.stringify({ i, msg: 'x'.repeat(80) }) + '\\n');
        ${exit === 'at-once' ? 'process.exit(1);' : 'logWritten(5000).then(() => process.exit(0));'}`;
      const node = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      node.stdout.on('data', (d: Buffer) => (out += d.toString()));
      node.on('error', reject);
      node.on('close', () => resolve(out));
    });

  it.each(['after-logWritten', 'at-once'] as const)('every line is written when the process exits %s', async (exit) => {
    const lines = (await child(exit)).split('\n').filter((l) => l !== '');
    expect(lines.map((l) => (JSON.parse(l) as { i: number }).i)).toEqual(Array.from({ length: 300 }, (_, i) => i));
  });
});
