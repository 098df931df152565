// `npm run demo -- --mode tcp`: `--protocol tcp` in front of a TCP echo app. An allowed caller's bytes come
// back; a caller the rules do not admit is disconnected after the handshake, and one without a client
// certificate during it, both before the app sees a connection. True when each got what it should.
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { createDevCa, type IssuedCertificate, issueSvid, saveSvid } from '../certs/dev-ca.js';
import { type DemoRun, frontOf, say, showAuditLog, svidFileFlags } from './demo-kit.js';

const TRUST_DOMAIN = 'example.org';
const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/orders-db`;
const ALLOWED_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/frontend`;
const DENIED_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/batch-job`;
const MESSAGE = 'hello over mTLS';

/** The app: echoes every byte, ends its side when the caller ends theirs; counts connections. */
async function startEchoApp(run: DemoRun): Promise<{ port: number; accepted: () => number }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  run.defer(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

/** Sends MESSAGE over mTLS, half-closes, and reports what came back before the connection ended. */
function callTcp(port: number, svid: IssuedCertificate | undefined): Promise<string> {
  return new Promise((resolve) => {
    let received = '';
    let failure: string | undefined;
    const socket = connect({
      host: '127.0.0.1',
      port,
      cert: svid?.chainPem,
      key: svid?.keyPem,
      // The demo client does not check the server; a real peer sidecar verifies its SPIFFE ID.
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => socket.destroy(new Error('no answer within 10 s')), 10_000);
    socket.on('secureConnect', () => socket.end(MESSAGE));
    socket.on('data', (d: Buffer) => {
      received += d.toString();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      failure = err.code ?? err.message;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (received) resolve(`echoed ${JSON.stringify(received)}`);
      else resolve(`connection closed by the sidecar, nothing echoed${failure ? ` (${failure})` : ''}`);
    });
  });
}

export async function tcpDemo(run: DemoRun): Promise<boolean> {
  const dir = await run.tempDir();
  say(`1. a dev trust domain "${TRUST_DOMAIN}" in ${dir}`);
  const ca = await createDevCa({ trustDomain: TRUST_DOMAIN });
  const [server, allowed, denied] = await Promise.all(
    [SERVER_ID, ALLOWED_ID, DENIED_ID].map((id) => issueSvid(ca, { id, lifetimeMs: 15 * 60_000 })),
  );
  await saveSvid(server, ca.certPem, join(dir, 'orders-db'));
  say(`   SVIDs: ${SERVER_ID} (the sidecar), ${ALLOWED_ID}, ${DENIED_ID}`);
  const app = await startEchoApp(run);
  say(`2. the demo app: a TCP echo server on 127.0.0.1:${app.port}`);
  const args = [
    '--protocol',
    'tcp',
    ...frontOf(`tcp://127.0.0.1:${app.port}`),
    ...svidFileFlags(join(dir, 'orders-db')),
    '--allow',
    ALLOWED_ID,
  ];
  const sidecar = await run.startSidecar(args);
  say(`3. the sidecar in TCP mode in front of it on 127.0.0.1:${sidecar.port} (mTLS, then bytes):`);
  say(`   spiffe-sidecar run ${args.join(' ')}`);
  say();
  const port = sidecar.port as number;
  const answers = {
    allowed: await callTcp(port, allowed),
    denied: await callTcp(port, denied),
    anonymous: await callTcp(port, undefined),
  };
  say(`caller ${ALLOWED_ID} (allowed) sends ${JSON.stringify(MESSAGE)}:`);
  say(`   ${answers.allowed}`);
  say(`caller ${DENIED_ID} (not allowed) sends ${JSON.stringify(MESSAGE)}:`);
  say(`   ${answers.denied}`);
  say('caller without a client certificate:');
  say(`   ${answers.anonymous}`);
  await showAuditLog(sidecar, 3);
  const ok =
    answers.allowed === `echoed ${JSON.stringify(MESSAGE)}` &&
    answers.denied.startsWith('connection closed') &&
    answers.anonymous.startsWith('connection closed') &&
    sidecar.logs.some((l) => l.event === 'authz' && l.decision === 'deny' && l.peer === DENIED_ID) &&
    app.accepted() === 1;
  say();
  say(
    ok
      ? 'demo passed: the app got one connection, from the allowed caller; the others never reached it.'
      : 'demo FAILED: see the answers above.',
  );
  return ok;
}
