// The admin listener is on the pod network in an injected pod: connections that send nothing, or a request left
// half-way, are closed after a while, and past 128 open connections more are closed at once (a review: with
// Node's defaults 2,000 idle connections were held for good and took the descriptors the data path needed).
import { connect, type Socket } from 'node:net';
import { beforeEach, expect, it } from 'vitest';
import { useAdminServers } from '../helpers/admin-server.js';

const startAdmin = useAdminServers();
let base: string;
beforeEach(async () => {
  base = await startAdmin();
});

function open(): { socket: Socket; closed: Promise<void> } {
  const socket = connect({ host: '127.0.0.1', port: Number(new URL(base).port) });
  socket.on('error', () => {});
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve())) };
}

it('a connection that sends nothing, and one that leaves a request half-way, are closed by the listener', async () => {
  const silent = open();
  const halfway = open();
  halfway.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
  // Both end on the listener's side (no timer of the test's own decides it).
  await Promise.all([silent.closed, halfway.closed]);
  // It still serves.
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
}, 60_000);

it('past 128 open connections, more are closed at once, and it serves again once they go', async () => {
  // 140 connections, each asking once: those past the limit are closed unanswered (128 at most are answered,
  // fewer if another client, such as fetch's pool, holds one), and the answered ones stay open (keep-alive).
  const all = Array.from({ length: 140 }, open);
  const outcomes = await Promise.all(
    all.map(
      (c) =>
        new Promise<'answered' | 'closed'>((resolve) => {
          c.socket.once('data', () => resolve('answered'));
          void c.closed.then(() => resolve('closed'));
          c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        }),
    ),
  );
  expect(outcomes.filter((o) => o === 'answered').length).toBeLessThanOrEqual(128);
  expect(outcomes.filter((o) => o === 'closed').length).toBeGreaterThanOrEqual(12);
  for (const c of all) c.socket.destroy();
  await Promise.all(all.map((c) => c.closed));
  await expect.poll(async () => (await fetch(`${base}/healthz`)).status).toBe(200);
});
