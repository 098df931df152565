// An answer of our own (here a 502: the app is down) to an HTTP/2 stream whose body has not ended. A
// security review saw this grow the sidecar to gigabytes within seconds, frozen in Node's HTTP/2 outgoing
// buffer (the stream was reset while its answer was still ending). The caller must get its 502, and the
// sidecar must stay small and keep answering.
import { readFile } from 'node:fs/promises';
import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { createDevCa, issueSvid, writeServingFiles } from '../helpers/pki.js';
import { type Running, startCli, waitForEvent } from '../helpers/process.js';
import { closedPort } from '../helpers/tcp-echo-app.js';
import { useWorkspace } from '../helpers/workspace.js';

const CLIENT_ID = 'spiffe://example.org/client';
const ws = useWorkspace();
let client: IssuedCertificate;
const sidecars: Running[] = [];

beforeAll(async () => {
  const ca = await createDevCa({ trustDomain: 'example.org' });
  const serving = await writeServingFiles(
    ws.path,
    await issueSvid(ca, { id: 'spiffe://example.org/server' }),
    ca.certPem,
  );
  client = await issueSvid(ca, { id: CLIENT_ID });
  const upstream = `http://127.0.0.1:${await closedPort()}`;
  for (const extra of [[], ['--upstream-protocol', 'h2c']]) {
    sidecars.push(
      startCli([
        '--listen',
        '127.0.0.1:0',
        '--upstream',
        upstream,
        ...extra,
        '--mtls-cert-file',
        serving.certFile,
        '--mtls-key-file',
        serving.keyFile,
        '--mtls-ca-file',
        serving.caFile,
        '--allow',
        CLIENT_ID,
      ]),
    );
  }
});
afterAll(async () => {
  for (const s of sidecars) s.child.kill('SIGKILL');
  await Promise.all(sidecars.map((s) => s.exited));
});

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
}

/** POST whose body is still open when the answer comes: resolves with the status. */
async function postWithOpenBody(port: number): Promise<number> {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    cert: client.chainPem,
    key: client.keyPem,
    rejectUnauthorized: false,
  });
  session.on('error', () => {});
  try {
    const stream = session.request({ ':method': 'POST', ':path': '/upload' }, { endStream: false });
    stream.on('error', () => {});
    stream.write('the first part of a body that has not ended');
    return await new Promise<number>((resolve, reject) => {
      stream.on('response', (h) => resolve(Number(h[':status'])));
      stream.on('close', () => reject(new Error(`stream closed without a response (rst ${stream.rstCode})`)));
    });
  } finally {
    session.destroy();
  }
}

describe('an answer of ours to an HTTP/2 stream whose body is still open', () => {
  it.each([
    ['HTTP/1.1 app', 0],
    ['h2c app', 1],
  ])('is delivered, and the sidecar stays small and keeps answering (%s)', async (_, index) => {
    const sidecar = sidecars[index];
    const started = await waitForEvent(sidecar, 'started');
    const port = (started.listen as { port: number }).port;
    expect(await postWithOpenBody(port)).toBe(502);
    // The process still answers: a second caller gets its own 502.
    expect(await postWithOpenBody(port)).toBe(502);
    // A sidecar at rest is well under 150 MB; the bug took it past 1 GB within a second or two.
    expect(await rssKb(sidecar.child.pid as number)).toBeLessThan(400_000);
  });
});
