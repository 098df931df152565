// The two-way byte relay on real loopback sockets: client ⇄ accepted | relayBytes | dialed ⇄ app. Bytes
// arrive intact both ways and a fast writer is held back, each direction half-closes on its own, an idle
// connection is cut, and an error or a close on one side ends the other.
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type ByteRelayOptions, relayBytes } from '../../src/proxy/byte-relay.js';
import { closed, closedPort, peerGone, readAll, writeRandom } from '../helpers/tcp-echo-app.js';

const MB = 1024 * 1024;

interface Relayed {
  /** The far end of `accepted`: the caller. */
  client: Socket;
  accepted: Socket;
  dialed: Socket;
  /** The far end of `dialed`: the app. */
  app: Socket;
}

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

/** A listening loopback server whose next accepted socket is `accepted()`. */
async function listener(): Promise<{ port: number; accepted: Promise<Socket> }> {
  const server = createServer({ allowHalfOpen: true });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection').then(([socket]) => {
    sockets.push(socket as Socket);
    return socket as Socket;
  });
  return { port: (server.address() as AddressInfo).port, accepted };
}

function dial(port: number): Socket {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  sockets.push(socket);
  return socket;
}

async function relayed(options: Partial<ByteRelayOptions> = {}): Promise<Relayed> {
  const front = await listener();
  const back = await listener();
  const client = dial(front.port);
  const accepted = await front.accepted;
  const dialed = dial(back.port);
  const app = await back.accepted;
  relayBytes(accepted, dialed, { idleTimeoutMs: 30_000, ...options });
  return { client, accepted, dialed, app };
}

describe('relayBytes', () => {
  for (const direction of ['client to app', 'app to client'] as const) {
    it(`carries 32 MB ${direction} intact, holding the writer back while the reader does not read`, async () => {
      const r = await relayed();
      const [writer, reader, source, destination] =
        direction === 'client to app'
          ? [r.client, r.app, r.accepted, r.dialed]
          : [r.app, r.client, r.dialed, r.accepted];
      const paused = once(source, 'pause');
      const written = writeRandom(writer, 32 * MB, true);
      // The reader reads nothing yet: the relay must stop reading rather than buffer the stream.
      await paused;
      expect(destination.writableLength).toBeLessThan(MB);
      const [sent, received] = await Promise.all([written, readAll(reader)]);
      expect(received).toEqual(sent);
    });
  }

  for (const first of ['client', 'app'] as const) {
    it(`lets the ${first} end its side and still read the answer; both close after both ended`, async () => {
      const r = await relayed();
      const [ender, answerer] = first === 'client' ? [r.client, r.app] : [r.app, r.client];
      ender.end('question');
      const asked = await readAll(answerer);
      expect(asked.length).toBe('question'.length);
      // One direction ended: the other still carries bytes.
      expect(r.accepted.destroyed || r.dialed.destroyed).toBe(false);
      const answered = readAll(ender);
      answerer.end('the answer');
      expect((await answered).length).toBe('the answer'.length);
      expect(await Promise.all([closed(r.accepted), closed(r.dialed)])).toEqual([false, false]);
    });
  }

  it('cuts a connection with no byte either way for the idle timeout', async () => {
    const r = await relayed({ idleTimeoutMs: 200 });
    const started = performance.now();
    await Promise.all([closed(r.accepted), closed(r.dialed), peerGone(r.client), peerGone(r.app)]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
  });

  it('keeps a connection whose bytes flow one way only for longer than the idle timeout', async () => {
    const idleTimeoutMs = 300;
    const r = await relayed({ idleTimeoutMs });
    let cut = false;
    r.accepted.once('close', () => (cut = true));
    // The app talks, the client only listens: the accepted socket sees those bytes too.
    const beats = 8;
    const received = new Promise<number>((resolve) => {
      let count = 0;
      r.client.on('data', (chunk: Buffer) => {
        count += chunk.length;
        if (count === beats) resolve(count);
      });
      // Cut early: what arrived so far, so that the test fails at once rather than at its timeout.
      r.client.once('end', () => resolve(count));
    });
    for (let i = 0; i < beats; i++) {
      r.app.write('.');
      await new Promise((resolve) => setTimeout(resolve, idleTimeoutMs / 3));
    }
    expect(await received).toBe(beats);
    expect(cut).toBe(false);
    // Then silence: the timeout runs out.
    await closed(r.accepted);
    expect(r.dialed.destroyed).toBe(true);
  });

  it('tells onError of an error on either socket and destroys both', async () => {
    for (const side of ['accepted', 'dialed'] as const) {
      const errors: Error[] = [];
      const r = await relayed({ onError: (err) => errors.push(err) });
      const boom = new Error(`${side} failed`);
      r[side].destroy(boom);
      await Promise.all([peerGone(r.client), peerGone(r.app)]);
      expect(errors).toEqual([boom]);
      expect(r.accepted.destroyed && r.dialed.destroyed).toBe(true);
    }
  });

  it('reports a dialed socket that cannot connect and closes the accepted one', async () => {
    const front = await listener();
    const client = dial(front.port);
    const accepted = await front.accepted;
    const dialed = dial(await closedPort());
    const errors: NodeJS.ErrnoException[] = [];
    relayBytes(accepted, dialed, { idleTimeoutMs: 30_000, onError: (err) => errors.push(err) });
    await peerGone(client);
    expect(errors.map((e) => e.code)).toEqual(['ECONNREFUSED']);
    expect(accepted.destroyed).toBe(true);
  });

  it('ends the dialed connection when the accepted one is destroyed (a drain, a revocation)', async () => {
    const r = await relayed();
    r.accepted.destroy();
    await peerGone(r.app);
    expect(r.dialed.destroyed).toBe(true);
  });

  it('flushes to the caller what the dialed side already handed over when it closes, then ends', async () => {
    const r = await relayed();
    let handedOver = 0;
    r.dialed.on('data', (chunk: Buffer) => (handedOver += chunk.length));
    // The client reads nothing yet, so bytes pile up in the accepted socket until the relay stops reading.
    const paused = once(r.dialed, 'pause');
    void writeRandom(r.app, 16 * MB, false).catch(() => {});
    await paused;
    expect(r.accepted.writableLength).toBeGreaterThan(0);
    r.dialed.destroy();
    const received = await readAll(r.client);
    expect(received.length).toBe(handedOver);
    await closed(r.accepted);
  });
});
