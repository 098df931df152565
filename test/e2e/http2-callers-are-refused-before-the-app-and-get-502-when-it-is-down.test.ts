// The refusals an HTTP/1.1 caller gets, over HTTP/2: a denied peer gets 403, a peer without a certificate
// is disconnected, CONNECT is 400 (none of them reaches the app), and an app that is down is a 502.
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import {
  type App,
  DENIED_ID,
  h2request,
  h2session,
  type Http2Fixture,
  useHttp2Fixture,
} from '../helpers/http2-fixture.js';
import { lastAudit } from '../helpers/authz.js';
import type { TestSidecar } from '../helpers/sidecar.js';
import { closedPort } from '../helpers/tcp-echo-app.js';

const fixture = useHttp2Fixture();
let app: App;
let sidecar: TestSidecar;
let allowed: IssuedCertificate;
let denied: IssuedCertificate;
let sidecarFor: Http2Fixture['sidecarFor'];
beforeAll(() => {
  ({ app, sidecar, allowed, denied, sidecarFor } = fixture());
});

describe('http2 callers are refused before the app and get 502 when it is down', () => {
  it('a denied HTTP/2 caller gets 403 and the app sees nothing', async () => {
    const before = app.seen.length;
    const from = sidecar.logs.length;
    const session = await h2session(sidecar.port, denied);
    const res = await h2request(session, { ':method': 'POST', ':path': '/orders' }, 'please');
    session.close();
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body.toString())).toEqual({ error: 'forbidden', reason: expect.any(String) });
    expect(app.seen.length).toBe(before);
    // The access line is written once the exchange is over: waited for.
    const line = await lastAudit(sidecar.logs, 'POST', '/orders', from);
    expect(line).toMatchObject({ decision: 'deny', peer: DENIED_ID, protocol: 'h2', status: 403 });
  });

  it('an HTTP/2 caller without a certificate is disconnected and the app sees nothing', async () => {
    const before = app.seen.length;
    const outcome = await h2session(sidecar.port, undefined).then(
      async (session) => {
        try {
          const res = await h2request(session, { ':path': '/anonymous' });
          return `answered ${res.status}`;
        } catch {
          return 'refused';
        }
      },
      () => 'refused',
    );
    expect(outcome).toBe('refused');
    expect(app.seen.length).toBe(before);
  });

  it('CONNECT over HTTP/2 is answered 400 and never reaches the app', async () => {
    const before = app.seen.length;
    const session = await h2session(sidecar.port, allowed);
    const res = await h2request(session, { ':method': 'CONNECT', ':authority': 'internal.example:22' }, 'SSH-2.0');
    session.close();
    expect(res.status).toBe(400);
    expect(app.seen.length).toBe(before);
  });

  it('an HTTP/2 caller gets 502 when the HTTP/1.1 app is down', async () => {
    const dead = await sidecarFor(`http://127.0.0.1:${await closedPort()}`);
    const session = await h2session(dead.port, allowed);
    const res = await h2request(session, { ':path': '/' });
    session.close();
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body.toString())).toMatchObject({ error: 'bad_gateway' });
  });
});
