// AppConnections reads every app connection into one shared buffer (Node's `onread`) and hands each read on
// itself, instead of through the readable stream. These prove it keeps the stream's promises over a real TCP
// connection: bytes that come before anyone listens wait for the listener, ahead of later ones; a paused
// connection delivers nothing until resumed; and megabytes arrive intact and in order across pauses.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { AppConnections } from '../../src/proxy/app-connections.js';
import { closeServer, listenOn } from '../helpers/proxy-unit.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An app whose accepted connection is handed to `onConnection`, and a pool that reaches it. */
async function appAndPool(onConnection: (socket: net.Socket) => void): Promise<AppConnections> {
  const server = net.createServer(onConnection);
  const port = await listenOn(server);
  const pool = new AppConnections('127.0.0.1', port, 4);
  cleanups.push(
    () => closeServer(server),
    () => pool.close(),
  );
  return pool;
}

/** Resolves on the event-loop turn in which `done()` first holds (checked once per turn, no timer). */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setImmediate(resolve));
}

it('bytes the app sends before anyone listens wait for the listener, ahead of the bytes sent later', async () => {
  const pool = await appAndPool((socket) => {
    socket.write('first;');
    socket.once('data', () => socket.end('second;'));
  });
  const { socket } = pool.take();
  cleanups.push(() => void socket.destroy());
  // Read from the kernel while nobody listens, and held by the stream.
  await until(() => socket.bytesRead >= 'first;'.length);
  expect(socket.readableLength).toBe('first;'.length);
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.write('go');
  await once(socket, 'end');
  expect(Buffer.concat(received).toString()).toBe('first;second;');
});

it('a paused connection delivers nothing until resumed, and 8 MiB arrive intact and in order across pauses', async () => {
  const total = 8 * 1024 * 1024;
  const sent = createHash('sha256');
  const pool = await appAndPool((socket) => {
    // A pattern that differs from one 64 KiB block to the next, so that a block out of place changes the hash.
    for (let offset = 0; offset < total; offset += 64 * 1024) {
      const block = Buffer.alloc(64 * 1024, (offset / 65536) % 251);
      block.writeUInt32BE(offset, 0);
      sent.update(block);
      socket.write(block);
    }
    socket.end();
  });
  const { socket } = pool.take();
  cleanups.push(() => void socket.destroy());
  const got = createHash('sha256');
  let bytes = 0;
  let whilePaused = 0;
  let pauses = 0;
  socket.on('data', (chunk: Buffer) => {
    if (socket.isPaused()) whilePaused++;
    got.update(chunk);
    bytes += chunk.length;
    // Every other read pauses the connection; it resumes a turn later, after any read that was due.
    if (pauses % 2 === 0) {
      socket.pause();
      setImmediate(() => socket.resume());
    }
    pauses++;
  });
  await once(socket, 'end');
  expect(bytes).toBe(total);
  expect(got.digest('hex')).toBe(sent.digest('hex'));
  expect(pauses).toBeGreaterThan(2);
  expect(whilePaused).toBe(0);
});
