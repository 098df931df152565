// The real `helm` (helm.sh/helm/v3 at the version test/interop/go-peers.js pins, built from the Go module proxy)
// for the chart scenarios: `helm template` and `helm lint` as a user runs them, with helm's own cache, config and
// data directories in a temporary directory per run (nothing read from or written to the user's ~/.config/helm).
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { buildPeer } from '../go-peers.js';

const run = promisify(execFile);

export const ROOT = new URL('../../../', import.meta.url).pathname;
export const CHART = join(ROOT, 'helm', 'spiffe-sidecar');
export const DEMO = join(ROOT, 'helm', 'examples', 'demo');

/**
 * The Kubernetes version the charts are rendered for: the chart's minimum (`kubeVersion: '>=1.29.0-0'`), named on
 * every render rather than helm's default (that of the client-go it is built with, 1.36, set by go-peers.js as
 * helm's Makefile does): what the charts render there they render on every later version (no template reads
 * .Capabilities.KubeVersion).
 */
export const KUBE_VERSION = '1.29.0';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- rendered YAML is untyped data
export type Obj = Record<string, any>;

/** helm's XDG directories in a temporary directory of its own (helm keeps nothing the tests need between runs). */
function helmEnv(home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '',
    HOME: home,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
    // No cluster: helm must never read a kubeconfig of the machine's.
    KUBECONFIG: join(home, 'no-kubeconfig'),
  };
}

/** The helm binary (built once per machine by go-peers.js; the interop global setup usually built it already). */
export async function helmBinary(): Promise<string> {
  return (await buildPeer('helm')).bin.helm;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with these arguments; resolves with its exit code and output (a non-zero exit does not throw). */
export async function helm(args: string[]): Promise<HelmResult> {
  const bin = await helmBinary();
  const home = await mkdtemp(join(tmpdir(), 'spiffe-sidecar-helm-'));
  try {
    const { stdout, stderr } = await run(bin, args, {
      cwd: ROOT,
      env: helmEnv(home),
      maxBuffer: 16 * 1024 * 1024,
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as Error & { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

export interface Render {
  /** The objects helm rendered (hooks included), in its order. */
  objects: Obj[];
}

/** `helm template RELEASE CHART --namespace NS ...args` at KUBE_VERSION; throws with helm's stderr when it fails. */
export async function render(release: string, chart: string, namespace: string, args: string[] = []): Promise<Render> {
  const common = [release, chart, '--namespace', namespace, '--kube-version', KUBE_VERSION, ...args];
  const result = await helm(['template', ...common]);
  if (result.code !== 0) throw new Error(`helm template ${common.join(' ')} failed:\n${result.stderr}`);
  const docs = parseAllDocuments(result.stdout);
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`helm rendered invalid YAML: ${doc.errors[0].message}`);
  }
  const objects: Obj[] = [];
  for (const doc of docs) {
    const object = doc.toJS() as Obj | null;
    if (!object) continue;
    objects.push(object);
  }
  return { objects };
}

/** The one object of this kind and name; throws when there is none or several. */
export function find(objects: Obj[], kind: string, name: string): Obj {
  const found = objects.filter((o) => o.kind === kind && o.metadata?.name === name);
  if (found.length !== 1) {
    const have = objects.map((o) => `${o.kind}/${o.metadata?.name}`).join(', ');
    throw new Error(`${found.length} ${kind}/${name} in the render (it has ${have})`);
  }
  return found[0];
}
