// CPU affinity for the unloaded-latency phase. On this kind of VM a wake-up that crosses to an idle vCPU
// costs tens of microseconds, so one request at a time measures where the scheduler happened to put the
// processes (0.014 ms or 0.08 ms for the same direct connection) rather than the proxy. With the load
// generator, the app and the process tree under test on one CPU, the result is stable and measures the
// software path. Uses `taskset` (util-linux); without it, nothing is pinned and the report says so.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import process from 'node:process';

let available;
/** Whether `taskset` can be used here. */
export function canPin() {
  if (available === undefined) {
    try {
      execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
      available = true;
    } catch {
      available = false;
    }
  }
  return available;
}

/**
 * Sets the CPU list of every thread of these processes; failures (a process gone) are ignored.
 * @param {number[]} pids
 * @param {string} cpus e.g. `1` or `0-1`
 */
function setAffinity(pids, cpus) {
  for (const pid of pids) {
    try {
      execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
    } catch {
      // gone, or not ours
    }
  }
}

/**
 * Runs `fn` with these processes on one CPU (the last one, away from most interrupts), then gives them
 * every CPU again.
 * @template T
 * @param {number[]} pids
 * @param {() => Promise<T>} fn
 * @returns {Promise<T>}
 */
export async function onOneCpu(pids, fn) {
  if (!canPin()) return fn();
  const count = os.availableParallelism();
  setAffinity(pids, String(count - 1));
  try {
    return await fn();
  } finally {
    setAffinity(pids, `0-${count - 1}`);
  }
}
