// Large app responses are streamed, not buffered: intact (SHA-256 of numbered blocks) to HTTP/2 and
// HTTP/1.1 callers, the first byte before the app has finished, and cut at the app when the caller resets.
import { createHash } from 'node:crypto';
import * as http2 from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { type App, bigSha256, h2request, h2session, MB, sha256, useHttp2Fixture } from '../helpers/http2-fixture.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const fixture = useHttp2Fixture();
let app: App;
let sidecar: TestSidecar;
let allowed: IssuedCertificate;
beforeAll(() => {
  ({ app, sidecar, allowed } = fixture());
});

describe('large responses stream to http2 and http1 callers and stop when the caller resets', () => {
  it('streams a 64 MB response to an HTTP/2 caller, intact and before the app has finished', async () => {
    const session = await h2session(sidecar.port, allowed);
    const res = await h2request(session, { ':path': '/big?blocks=64' });
    session.close();
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(64 * MB);
    expect(sha256(res.body)).toBe(bigSha256(64));
    const state = app.big.at(-1)!;
    expect(state.aborted).toBe(false);
    expect(res.firstByteAt).toBeLessThan(state.finishedAt!);
  }, 60_000);

  it('streams the same large response to an HTTP/1.1 caller', async () => {
    const res = await new Promise<{ status: number; version: string; length: number; sha256: string }>(
      (resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: sidecar.port,
            path: '/big?blocks=16',
            cert: allowed.chainPem,
            key: allowed.keyPem,
            rejectUnauthorized: false,
            agent: false,
          },
          (r) => {
            const hash = createHash('sha256');
            let length = 0;
            r.on('data', (d: Buffer) => {
              hash.update(d);
              length += d.length;
            });
            r.on('end', () =>
              resolve({ status: r.statusCode ?? 0, version: r.httpVersion, length, sha256: hash.digest('hex') }),
            );
            r.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end();
      },
    );
    expect(res).toEqual({ status: 200, version: '1.1', length: 16 * MB, sha256: bigSha256(16) });
  }, 60_000);

  it('cancels the app’s response when the HTTP/2 caller resets its stream', async () => {
    const session = await h2session(sidecar.port, allowed);
    const stream = session.request({ ':path': '/big?blocks=512' }, { endStream: true });
    const before = app.big.length;
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await expect.poll(() => app.big.length).toBe(before + 1);
    await expect.poll(() => app.big[before].aborted, { timeout: 5000 }).toBe(true);
    expect(app.big[before].finishedAt).toBeUndefined();
    session.close();
  }, 30_000);
});
