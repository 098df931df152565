// --upstream-timeout starts once the caller's request is complete: an app that answers late gets 504,
// while an upload that lasts longer than the timeout (HTTP/2 or HTTP/1.1) still reaches the app.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import {
  type App,
  h2request,
  h2session,
  type Http2Fixture,
  sha256,
  useHttp2Fixture,
} from '../helpers/http2-fixture.js';
import type { TestSidecar } from '../helpers/sidecar.js';

const fixture = useHttp2Fixture();
let app: App;
let allowed: IssuedCertificate;
let sidecarFor: Http2Fixture['sidecarFor'];
let onCleanup: Http2Fixture['onCleanup'];
beforeAll(() => {
  ({ app, allowed, sidecarFor, onCleanup } = fixture());
});

describe('--upstream-timeout 1s bounds the wait for the answer, not the upload', () => {
  let timed: TestSidecar;
  beforeAll(async () => {
    timed = await sidecarFor(app.url, { 'upstream-timeout': '1s' });
  });

  /** 10 parts, 250 ms apart: the request lasts 2.5 s; the app answers once it has all of it. */
  async function* slowly(parts: Buffer[]) {
    for (const p of parts) {
      yield p;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  it('control: a request the app answers late gets 504 after about a second', async () => {
    const slowApp = createServer(() => {});
    await new Promise<void>((resolve) => slowApp.listen(0, '127.0.0.1', resolve));
    onCleanup(
      () =>
        new Promise<void>((resolve) => {
          slowApp.close(() => resolve());
          slowApp.closeAllConnections();
        }),
    );
    const silent = await sidecarFor(`http://127.0.0.1:${(slowApp.address() as AddressInfo).port}`, {
      'upstream-timeout': '1s',
    });
    const session = await h2session(silent.port, allowed);
    const res = await h2request(session, { ':path': '/never' });
    session.close();
    expect(res.status).toBe(504);
  });

  it('an HTTP/2 upload that lasts 2.5 s reaches the app and gets its answer', async () => {
    const parts = Array.from({ length: 10 }, () => randomBytes(1000));
    const session = await h2session(timed.port, allowed);
    const res = await h2request(session, { ':method': 'POST', ':path': '/slow-h2-upload' }, () => slowly(parts));
    session.close();
    expect(res.status).toBe(200);
    expect(app.seen.at(-1)).toMatchObject({ url: '/slow-h2-upload', bodySha256: sha256(Buffer.concat(parts)) });
  }, 15_000);

  it('an HTTP/1.1 upload that lasts 2.5 s reaches the app and gets its answer', async () => {
    const parts = Array.from({ length: 10 }, () => randomBytes(1000));
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: timed.port,
          method: 'POST',
          path: '/slow-h1-upload',
          cert: allowed.chainPem,
          key: allowed.keyPem,
          rejectUnauthorized: false,
          agent: false,
        },
        (r) => {
          r.resume();
          r.on('end', () => resolve(r.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      void (async () => {
        for await (const p of slowly(parts)) req.write(p);
        req.end();
      })();
    });
    expect(status).toBe(200);
    expect(app.seen.at(-1)).toMatchObject({ url: '/slow-h1-upload', bodySha256: sha256(Buffer.concat(parts)) });
  }, 15_000);
});
