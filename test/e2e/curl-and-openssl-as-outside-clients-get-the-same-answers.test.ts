// The real curl and openssl binaries as clients: what an operator would type.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueSvid } from '../helpers/pki.js';
import { ALLOWED_ID, type Scenario, startScenario } from '../helpers/scenario.js';

const run = promisify(execFile);
let s: Scenario;
let certs: Record<'allowed' | 'denied' | 'forged', { cert: string; key: string }>;

beforeAll(async () => {
  s = await startScenario();
  const forged = await issueSvid(s.caB, { id: ALLOWED_ID });
  const write = async (name: string, svid: { chainPem: string; keyPem: string }) => {
    const cert = join(s.dir, `${name}.crt`);
    const key = join(s.dir, `${name}.key`);
    await writeFile(cert, svid.chainPem);
    await writeFile(key, svid.keyPem);
    return { cert, key };
  };
  certs = {
    allowed: await write('allowed', s.allowed),
    denied: await write('denied', s.denied),
    forged: await write('forged', forged),
  };
});
afterAll(() => s.close());

async function curl(args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run('curl', ['-sS', '--insecure', '--max-time', '10', ...args]);
    return { code: 0, stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, stdout: e.stdout };
  }
}

describe('curl and openssl as outside clients get the same answers', () => {
  it('curl with the allowed SVID: 200, and the app sees the verified ID', async () => {
    const url = `https://127.0.0.1:${s.sidecar.port}/from-curl`;
    const res = await curl([
      '--cert',
      certs.allowed.cert,
      '--key',
      certs.allowed.key,
      '-H',
      'x-spiffe-id: spiffe://example.org/admin',
      url,
    ]);
    expect(res.code).toBe(0);
    const echoed = JSON.parse(res.stdout);
    expect(echoed.url).toBe('/from-curl');
    expect(echoed.headers['x-spiffe-id']).toBe(ALLOWED_ID);
  });

  it('curl with a denied SVID: 403', async () => {
    const url = `https://127.0.0.1:${s.sidecar.port}/from-curl`;
    const res = await curl([
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--cert',
      certs.denied.cert,
      '--key',
      certs.denied.key,
      url,
    ]);
    expect(res.stdout).toBe('403');
  });

  it('curl without a client certificate and with a forged cross-domain SVID: the connection fails', async () => {
    const before = s.app.seen.length;
    const url = `https://127.0.0.1:${s.sidecar.port}/from-curl`;
    const none = await curl([url]);
    // TLS 1.3: the client learns of the rejection only on its first read, so curl's exit code depends on
    // timing and on the protocol ALPN chose (35, 52, 55, 56; 16, 18 or 92 with HTTP/2). What matters: it
    // fails, it got no response, and the app saw nothing.
    expect(none.code).not.toBe(0);
    expect(none.stdout).toBe('');
    const forged = await curl(['--cert', certs.forged.cert, '--key', certs.forged.key, url]);
    expect(forged.code).not.toBe(0);
    expect(forged.stdout).toBe('');
    expect(s.app.seen.length).toBe(before);
  });

  it('openssl s_client with the forged SVID completes TLS but is cut off before HTTP', async () => {
    const before = s.app.seen.length;
    const request = 'GET /from-openssl HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n';
    const child = execFile(
      'openssl',
      [
        's_client',
        '-connect',
        `127.0.0.1:${s.sidecar.port}`,
        '-cert',
        certs.forged.cert,
        '-key',
        certs.forged.key,
        '-quiet',
      ],
      { timeout: 10_000 },
    );
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stdin?.end(request);
    await new Promise((resolve) => child.on('close', resolve));
    expect(out).not.toContain('HTTP/1.1');
    expect(s.app.seen.length).toBe(before);
    expect(s.sidecar.logs.filter((l) => l.event === 'peer_rejected').at(-1)?.reason).toBe('ERR_CHAIN_UNTRUSTED');
  });

  it('openssl s_client with the allowed SVID gets the app answer', async () => {
    const request = 'GET /from-openssl HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n';
    const { stdout } = await run(
      'sh',
      [
        '-c',
        `printf '${request.replace(/\r\n/g, '\\r\\n')}' | openssl s_client -connect 127.0.0.1:${s.sidecar.port} -cert ${certs.allowed.cert} -key ${certs.allowed.key} -quiet -ign_eof 2>/dev/null`,
      ],
      { timeout: 10_000 },
    );
    expect(stdout).toContain('HTTP/1.1 200 OK');
    expect(stdout).toContain(ALLOWED_ID);
  });
});
