// Child processes of the bench: spawned with their output in a log file (or piped, to read a ready line),
// tracked so that every one is stopped when the bench ends, however it ends.
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { clearTimeout, setTimeout } from 'node:timers';
import { setTimeout as delay } from 'node:timers/promises';

/** @type {Set<import('node:child_process').ChildProcess>} */
const running = new Set();

/** The `cat` that drains a child's output into its log file (logPipe), by child. */
const logReaders = new WeakMap();

/**
 * A pipe that a `cat` of its own drains into `logFile`. A sidecar in a pod writes its log to a pipe, and the
 * container runtime writes the file: a child given this pays for a pipe write, as there, and not for the file
 * system's (ext4 made each access line cost the sidecar ~2 µs more than a pipe once its file had grown to
 * hundreds of MB, so that the same build measured differently the longer the bench ran). The reader's own CPU
 * counts as load from outside the bench, as the runtime's would.
 * @param {string} logFile
 */
export function logPipe(logFile) {
  const fd = openSync(logFile, 'a');
  const reader = spawn('cat', [], { stdio: ['pipe', fd, fd] });
  closeSync(fd);
  running.add(reader);
  reader.once('exit', () => running.delete(reader));
  return reader;
}

/**
 * Spawns a process; stdout and stderr go to `logFile` unless `pipeStdout` (then stdout is readable), or through
 * `logReader` (logPipe) when given.
 * @param {string} command
 * @param {string[]} args
 * @param {{ logFile: string, pipeStdout?: boolean, env?: NodeJS.ProcessEnv,
 *   logReader?: import('node:child_process').ChildProcess }} options
 */
export function spawnChild(command, args, options) {
  const reader = options.logReader;
  const out = reader ? /** @type {import('node:stream').Writable} */ (reader.stdin) : openSync(options.logFile, 'a');
  const child = spawn(command, args, {
    stdio: ['ignore', options.pipeStdout ? 'pipe' : out, out],
    env: options.env ?? process.env,
  });
  if (typeof out === 'number') closeSync(out);
  else {
    // The child has its own copy: the reader sees the end of the pipe once the child (and its workers) are gone.
    out.destroy();
    logReaders.set(child, reader);
  }
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

/**
 * Waits for a line matching `pattern` on the child's piped stdout; resolves with the match.
 * @param {import('node:child_process').ChildProcess} child
 * @param {RegExp} pattern
 * @param {number} timeoutMs
 * @returns {Promise<RegExpMatchArray>}
 */
export function waitForLine(child, pattern, timeoutMs) {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no ${pattern} within ${timeoutMs} ms; output: ${text.slice(-500)}`));
    }, timeoutMs);
    const onData = (/** @type {Buffer} */ chunk) => {
      text += chunk.toString();
      const match = pattern.exec(text);
      if (match) {
        cleanup();
        resolve(match);
      }
    };
    const onExit = (/** @type {number | null} */ code) => {
      cleanup();
      reject(new Error(`exited with ${code} before ${pattern}; output: ${text.slice(-500)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      // Keep draining stdout so the child never blocks on a full pipe.
      child.stdout?.resume();
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

/**
 * GET url every `intervalMs` until it answers 200; resolves with the time it answered (performance.now()).
 * @param {string} url
 * @param {{ timeoutMs: number, intervalMs?: number, child?: import('node:child_process').ChildProcess }} options
 */
export async function waitForHttp200(url, { timeoutMs, intervalMs = 5, child }) {
  const deadline = performance.now() + timeoutMs;
  let exited = false;
  child?.once('exit', () => (exited = true));
  while (performance.now() < deadline) {
    if (exited) throw new Error(`${url}: the process exited before it was ready`);
    const status = await new Promise((resolve) => {
      const req = http.get(url, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', () => resolve(0));
    });
    if (status === 200) return performance.now();
    await delay(intervalMs);
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
}

/**
 * Waits until something accepts TCP connections on host:port.
 * @param {string} host
 * @param {number} port
 * @param {number} timeoutMs
 */
export async function waitForPort(host, port, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await delay(10);
  }
  throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
}

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited.
 * @param {import('node:child_process').ChildProcess} child
 * @param {number} [graceMs]
 */
export async function stopChild(child, graceMs = 3000) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
  // Its log is whole once its reader has written the last of the pipe and ended by itself (killed only if it
  // has not within the grace time: a worker of the child still holding the pipe).
  const reader = logReaders.get(child);
  if (reader && reader.exitCode === null && reader.signalCode === null) {
    const ended = new Promise((resolve) => reader.once('exit', resolve));
    const timer = setTimeout(() => reader.kill('SIGKILL'), graceMs);
    await ended;
    clearTimeout(timer);
  }
}

/** Asks every child still running to stop (SIGTERM, so that nginx's master takes its worker along). */
export function terminateAll() {
  for (const child of running) child.kill('SIGTERM');
}

/** Every child still running. */
export function runningChildren() {
  return [...running];
}

/** A free TCP port on 127.0.0.1 (bound then released: fine on a machine where nothing races for it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
      server.close(() => resolve(port));
    });
  });
}
