// `--workers N`: one sidecar process per core. The primary forks N workers (node:cluster) that share the
// listening sockets, and keeps the admin listener itself: /readyz is ready only when every worker is,
// /metrics sums the workers' metrics (prom-client's AggregatorRegistry), /certs asks a worker, /api-keys
// and the API key gauges ask every worker (each keeps its own last-use records) and merge the answers.
// Workers get SIGHUP and SIGTERM forwarded and are restarted if one dies; a worker that fails to start
// stops the whole sidecar. Each keeps its own TLS ticket keys (server-tls.ts says why), but all sign identity
// assertions with the primary's one key, since the primary's JWKS is the one apps check them against.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Registry } from 'prom-client';
import { registerApiKeyMetrics } from './admin/metrics.js';
import { AdminServer, type Readiness } from './admin/server.js';
import { apiKeyCounts, type ApiKeysDocument, mergeApiKeysDocuments } from './authn/api-key-usage.js';
import type { Config } from './config.js';
import { type Logger, logWritten } from './log.js';
import { type AssertionJwks, assertionKey, newAssertionKeyPem } from './proxy/identity-assertion.js';

const ADMIN_REQUEST = 'spiffe-sidecar:admin-request';
const ADMIN_REPLY = 'spiffe-sidecar:admin-reply';
const STARTED = 'spiffe-sidecar:started';
const ASSERTION_KEY_REQUEST = 'spiffe-sidecar:assertion-key-request';
const ASSERTION_KEY = 'spiffe-sidecar:assertion-key';
const ASK_TIMEOUT_MS = 2000;
/** The longest wait before a worker is started again after replacements that exited before they started. */
const RESTART_MAX_MS = 30_000;

interface AdminRequest {
  type: typeof ADMIN_REQUEST;
  id: number;
  what: 'readiness' | 'certs' | 'api-keys';
}

const NO_API_KEYS: ApiKeysDocument = { since: new Date(0).toISOString(), unused_after_seconds: 0, keys: [] };

/** In a worker: answers the primary's admin questions and shares its metrics registry. */
export function serveAdminToPrimary(
  registry: Registry,
  readiness: () => Promise<Readiness>,
  certs: () => object,
  apiKeys?: () => ApiKeysDocument,
): void {
  // Constructing one installs prom-client's worker side of the metrics exchange.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  process.on('message', (message: AdminRequest) => {
    if (message?.type !== ADMIN_REQUEST) return;
    const answer =
      message.what === 'readiness'
        ? readiness()
        : Promise.resolve(message.what === 'certs' ? certs() : (apiKeys?.() ?? NO_API_KEYS));
    answer.then(
      (body) => process.send?.({ type: ADMIN_REPLY, id: message.id, body }),
      (err: Error) =>
        process.send?.({ type: ADMIN_REPLY, id: message.id, body: { ready: false, reason: err.message } }),
    );
  });
}

/** In a worker, once it serves. */
export async function reportStarted(): Promise<void> {
  // Our "started" line reaches stdout before the primary can log `workers_started` (a second at most: a reader
  // that does not take it must not keep the worker from counting as started).
  await logWritten(1000);
  process.send?.({ type: STARTED });
}

/**
 * In a worker: the identity-assertion key (PKCS#8 PEM) the primary holds for all workers; undefined outside
 * `--workers`. Rejects if the primary does not answer, which stops the worker's start and so the sidecar.
 * Asked for rather than pushed at fork: a message that arrives before this process listens for it is lost,
 * and an environment variable would be read outside cli.ts, inherited by anything we spawn, and readable
 * in /proc/PID/environ; the IPC pipe is private to the primary and this worker.
 */
export function assertionKeyForWorker(): Promise<string | undefined> {
  if (!cluster.isWorker) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new Error('the primary did not hand over the identity assertion key'));
    }, ASK_TIMEOUT_MS);
    const onMessage = (message: { type?: string; pem?: unknown }) => {
      if (message?.type !== ASSERTION_KEY || typeof message.pem !== 'string') return;
      process.off('message', onMessage);
      clearTimeout(timer);
      resolve(message.pem);
    };
    process.on('message', onMessage);
    process.send?.({ type: ASSERTION_KEY_REQUEST });
  });
}

/**
 * In the primary, before forking: answers workers' `assertionKeyForWorker()`. The key is made at the first
 * request, so `jwks()` is defined exactly when the workers sign (each asks before it reports started), and
 * a restarted worker gets the same key.
 */
export function shareAssertionKey(): { jwks(): AssertionJwks | undefined } {
  let pem: string | undefined;
  let jwks: AssertionJwks | undefined;
  cluster.on('message', (worker: Worker, message: { type?: string }) => {
    if (message?.type !== ASSERTION_KEY_REQUEST) return;
    if (pem === undefined) {
      pem = newAssertionKeyPem();
      jwks = assertionKey(pem).jwks;
    }
    worker.send({ type: ASSERTION_KEY, pem });
  });
  return { jwks: () => jwks };
}

export interface Primary {
  stop(signal: string): Promise<void>;
}

export async function runPrimary(config: Config, log: Logger): Promise<Primary> {
  // The kernel spreads connections over the workers' accept calls; round-robin in the primary would
  // cost it a core of its own at high connection rates.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const workers = new Set<Worker>();
  let stopping = false;
  let nextId = 0;
  const pending = new Map<number, (body: unknown) => void>();
  const ask = (worker: Worker, what: AdminRequest['what']) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`worker ${worker.id} did not answer`));
      }, ASK_TIMEOUT_MS);
      pending.set(id, (body) => {
        pending.delete(id);
        clearTimeout(timer);
        resolve(body);
      });
      worker.send({ type: ADMIN_REQUEST, id, what } satisfies AdminRequest);
    });

  let started = 0;
  let failedAtStart: ((code: number) => void) | undefined;
  const allStarted = new Promise<void>((resolve, reject) => {
    failedAtStart = (code) => reject(new Error(`a worker exited with status ${code} while starting`));
    cluster.on('message', (_worker, message: { type?: string; id?: number; body?: unknown }) => {
      if (message?.type === STARTED && ++started === config.workers) resolve();
      if (message?.type === ADMIN_REPLY && message.id !== undefined) pending.get(message.id)?.(message.body);
    });
  });
  // Workers that have reported started: only they get SIGHUP (one still starting may not handle it yet, and
  // its default action would kill it; it reads the files as it starts anyway).
  const up = new WeakSet<Worker>();
  // Replacements that exited before they started, in a row: each waits twice as long as the last (a file
  // being rewritten in place is back in a second; a bad one would otherwise restart a worker every second).
  let failedRestarts = 0;
  const fork = () => {
    const worker = cluster.fork();
    workers.add(worker);
    worker.on('message', (m: { type?: string }) => {
      if (m?.type !== STARTED) return;
      up.add(worker);
      failedRestarts = 0;
    });
    worker.once('exit', (code, signal) => {
      workers.delete(worker);
      if (stopping) return;
      const started = up.has(worker);
      // Before the sidecar serves, a worker that cannot start stops it (status 1, in main.ts).
      if (!started && !serving) {
        failedAtStart?.(code ?? 1);
        return;
      }
      if (!started) failedRestarts++;
      const delayMs = Math.min(RESTART_MAX_MS, 1000 * 2 ** Math.min(failedRestarts, 5));
      log.error(
        { event: 'worker_exited', worker: worker.id, code, signal, starting: !started, restart_in_ms: delayMs },
        started ? 'a worker exited; starting another' : 'a worker exited before it started; starting another',
      );
      setTimeout(() => {
        if (!stopping) fork();
      }, delayMs).unref();
    });
  };
  // SIGHUP is ours from the start (its default action would kill the primary); it reaches the workers that
  // have started (see `up`).
  let serving = false;
  process.on('SIGHUP', () => {
    for (const worker of workers) if (up.has(worker)) worker.process.kill('SIGHUP');
  });
  const assertionKeys = shareAssertionKey();
  for (let i = 0; i < config.workers; i++) fork();
  const stopWorkers = async (signal: NodeJS.Signals) => {
    stopping = true;
    const exits = [...workers].map((w) => new Promise((resolve) => w.once('exit', resolve)));
    for (const worker of workers) worker.process.kill(signal);
    await Promise.all(exits);
  };
  try {
    await allStarted;
  } catch (err) {
    await stopWorkers('SIGKILL');
    throw err;
  }
  const aggregator = new AggregatorRegistry();
  // Each worker keeps its own last-use records: a key was used if any worker saw it.
  const apiKeys = config.apiKeysFile
    ? async () => {
        if (workers.size === 0) throw new Error('no worker is serving');
        const answers = await Promise.all([...workers].map((w) => ask(w, 'api-keys')));
        return mergeApiKeysDocuments(answers as ApiKeysDocument[]);
      }
    : undefined;
  // The API key gauges are left out of the workers' sum (see metrics.ts): the primary counts the merge.
  const own = new Registry();
  if (apiKeys) registerApiKeyMetrics(own, { counts: async () => apiKeyCounts(await apiKeys()) });
  const clusterMetrics = async () => {
    const [workersText, ownText] = await Promise.all([aggregator.clusterMetrics(), own.metrics()]);
    return ownText === '' || workersText.endsWith('\n') ? workersText + ownText : `${workersText}\n${ownText}`;
  };
  // Every worker has started, so every worker that signs assertions has asked for the key by now.
  const jwks = assertionKeys.jwks();
  const admin = await AdminServer.start({
    ...config.admin,
    registry: { metrics: clusterMetrics, contentType: aggregator.contentType },
    identity: undefined,
    source: config.source?.kind ?? 'none',
    readiness: async () => {
      if (stopping) return { ready: false, reason: 'draining' };
      if (workers.size < config.workers) return { ready: false, reason: 'worker_restarting' };
      const answers = (await Promise.all([...workers].map((w) => ask(w, 'readiness')))) as Readiness[];
      return answers.find((r) => !r.ready) ?? { ready: true };
    },
    certs: () => ask([...workers][0], 'certs') as Promise<object>,
    apiKeys,
    assertionJwks: jwks && (() => jwks),
  });
  log.info(
    { event: 'workers_started', workers: config.workers, admin: admin.address() },
    `${config.workers} workers serving`,
  );
  serving = true;
  return {
    async stop(signal) {
      await stopWorkers(signal === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
      await admin.close();
    },
  };
}
