// The harness's handle on the load generator process (bench/load/main.js, forked once and reused).
import { fork } from 'node:child_process';
import { fileURLToPath, URL } from 'node:url';

/**
 * @typedef {object} PhaseSummary
 * @property {string} mode
 * @property {number} requests
 * @property {number} completed all 2xx responses, warm-up included
 * @property {number} errors
 * @property {Record<string, number>} errorKinds
 * @property {number} windowMs
 * @property {number} rps
 * @property {{ samples: number, p50?: number, p90?: number, p99?: number, max?: number }} latency in ms
 * @property {string[]} serials
 */

export class LoadGenerator {
  #child;
  #nextId = 1;
  /** @type {Map<number, { resolve: Function, reject: Function, onEvent?: Function }>} */
  #pending = new Map();

  constructor() {
    this.#child = fork(fileURLToPath(new URL('../load/main.js', import.meta.url)), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (/** @type {any} */ message) => {
      const waiter = this.#pending.get(message.id);
      if (!waiter) return;
      if (message.event) {
        waiter.onEvent?.(message.event);
        return;
      }
      this.#pending.delete(message.id);
      if (message.error) waiter.reject(new Error(`load generator: ${message.error}`));
      else waiter.resolve({ results: message.results, cpuMs: message.cpuMs });
    });
    this.#child.on('exit', (code) => {
      for (const waiter of this.#pending.values()) waiter.reject(new Error(`load generator exited (${code})`));
      this.#pending.clear();
    });
  }

  /** The load generator's pid (its CPU is reported, never counted as a proxy's). */
  get pid() {
    return /** @type {number} */ (this.#child.pid);
  }

  /**
   * Runs phases concurrently; `onEvent` sees the first phase's window-start and window-end.
   * @param {import('../load/engine.js').LoadSpec[]} specs
   * @param {(event: 'window-start' | 'window-end') => void} [onEvent]
   * @returns {Promise<{ results: PhaseSummary[], cpuMs: number }>}
   */
  run(specs, onEvent) {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onEvent });
      this.#child.send({ id, specs });
    });
  }

  close() {
    this.#child.disconnect();
  }
}
