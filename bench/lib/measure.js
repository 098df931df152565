// One round of one row: the keep-alive, new-connection and unloaded-latency phases, with the CPU of the
// process tree under test read from /proc at the edges of each measurement window and its RSS sampled
// throughout. The app's CPU is read too (it is the same work in every row: a sanity check), and so is that of
// a process the row depends on outside its tree (the store row's redis-server), reported apart.
import { performance } from 'node:perf_hooks';
import { cpuMs, machineBusyMs, processTree, rssPeakSampler } from './proc.js';

/**
 * @typedef {object} PhaseResult
 * @property {number} rps
 * @property {number} requests
 * @property {number} completed
 * @property {number} errors
 * @property {Record<string, number>} errorKinds
 * @property {number | undefined} cpuUsPerRequest CPU of the tree under test per request, in µs
 * @property {number | undefined} appCpuUsPerRequest
 * @property {number} cores CPU of the tree under test during the window, in cores
 * @property {number} loadgenCores the load generator's CPU during the window, in cores
 * @property {number} foreignCores CPU used during the window by processes outside the bench (others' tests,
 *   builds: the shared machine's noise), in cores
 * @property {number} rssPeakBytes
 * @property {number | undefined} [sideCpuUsPerRequest] CPU per request of the row's side process (redis-server)
 * @property {number | undefined} [sideCores]
 * @property {number | undefined} [sideRssPeakBytes]
 * @property {{ p50?: number, p90?: number, p99?: number, max?: number, samples: number }} latency ms
 */

/**
 * Runs one load phase against a row and measures the row's process tree meanwhile.
 * @param {import('./loadgen.js').LoadGenerator} loadgen
 * @param {import('../load/engine.js').LoadSpec} spec
 * @param {{ pid: number, appPid: number, sidePid?: number }} row
 * @returns {Promise<PhaseResult>}
 */
export async function measurePhase(loadgen, spec, { pid, appPid, sidePid }) {
  const pids = processTree(pid);
  const sidePids = sidePid === undefined ? [] : processTree(sidePid);
  const sampler = rssPeakSampler(pids, 100);
  const sideSampler = sidePid === undefined ? undefined : rssPeakSampler(sidePids, 100);
  let start;
  let end;
  const snapshot = () => ({
    at: performance.now(),
    cpu: cpuMs(pids),
    app: cpuMs([appPid]),
    loadgen: cpuMs([loadgen.pid]),
    side: cpuMs(sidePids),
    machine: machineBusyMs(),
  });
  const { results } = await loadgen.run([spec], (event) => {
    if (event === 'window-start') start = snapshot();
    else end = snapshot();
  });
  const rssPeakBytes = sampler.stop();
  const sideRssPeakBytes = sideSampler?.stop();
  const [result] = results;
  const perRequest = (/** @type {number} */ ms) => (result.requests > 0 ? (ms * 1000) / result.requests : undefined);
  const cpu = start && end ? end.cpu - start.cpu : NaN;
  const cores = (/** @type {'cpu' | 'app' | 'loadgen' | 'side' | 'machine'} */ field) =>
    start && end ? (end[field] - start[field]) / (end.at - start.at) : NaN;
  return {
    rps: result.rps,
    requests: result.requests,
    completed: result.completed,
    errors: result.errors,
    errorKinds: result.errorKinds,
    cpuUsPerRequest: perRequest(cpu),
    appCpuUsPerRequest: start && end ? perRequest(end.app - start.app) : undefined,
    cores: cores('cpu'),
    loadgenCores: cores('loadgen'),
    foreignCores: Math.max(
      0,
      cores('machine') - cores('cpu') - (pid === appPid ? 0 : cores('app')) - cores('loadgen') - cores('side'),
    ),
    rssPeakBytes,
    ...(sidePid === undefined
      ? {}
      : {
          sideCpuUsPerRequest: start && end ? perRequest(end.side - start.side) : undefined,
          sideCores: cores('side'),
          sideRssPeakBytes,
        }),
    latency: result.latency,
  };
}
