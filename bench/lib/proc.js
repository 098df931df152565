// CPU and memory of a process tree, from /proc (Linux): a proxy may be several processes (nginx master and
// worker, a node:cluster primary and its workers), so everything is summed over the root and its
// descendants. CPU is utime + stime of every thread (the whole process, GC and libuv threads included).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { clearInterval, setInterval } from 'node:timers';

let clockTicks;
/** Clock ticks per second of /proc/<pid>/stat times (getconf CLK_TCK; 100 on Linux in practice). */
export function clockTicksPerSecond() {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

let pageBytes;
function pageSize() {
  if (pageBytes === undefined) {
    try {
      pageBytes = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;
    } catch {
      pageBytes = 4096;
    }
  }
  return pageBytes;
}

/**
 * The fields after the command name of /proc/<pid>/stat (the name may contain spaces and parentheses).
 * @param {number} pid
 * @returns {string[] | undefined} fields from `state` (field 3) on, or undefined if the process is gone
 */
function statFields(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * The root and all its descendants that are alive now.
 * @param {number} root
 * @returns {number[]}
 */
export function processTree(root) {
  const children = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (!fields) continue;
    const ppid = Number(fields[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(entry));
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

/**
 * CPU time used so far by these processes, in milliseconds (utime + stime).
 * @param {number[]} pids
 */
export function cpuMs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    const fields = statFields(pid);
    // Fields 14 and 15 (utime, stime): index 11 and 12 once the first two are cut off.
    if (fields) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1000) / clockTicksPerSecond();
}

/**
 * Resident memory of these processes (VmRSS, from statm), in bytes.
 * @param {number[]} pids
 */
export function rssBytes(pids) {
  let pages = 0;
  for (const pid of pids) {
    try {
      pages += Number(readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]);
    } catch {
      // gone
    }
  }
  return pages * pageSize();
}

/**
 * Samples the peak RSS of a process tree every `intervalMs` until stopped.
 * @param {number[]} pids
 * @param {number} intervalMs
 */
export function rssPeakSampler(pids, intervalMs = 100) {
  let peak = rssBytes(pids);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssBytes(pids));
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, rssBytes(pids));
      return peak;
    },
  };
}

/**
 * CPU time the whole machine has spent busy so far (all CPUs, everything but idle and iowait), in ms.
 * @returns {number}
 */
export function machineBusyMs() {
  const fields = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  return ((total - fields[3] - fields[4]) * 1000) / clockTicksPerSecond();
}
