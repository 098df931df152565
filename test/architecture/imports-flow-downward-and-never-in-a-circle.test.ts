// The shape of src/, checked: no file imports itself back through others (a circle of imports), and
// imports flow downward through the layers of ARCHITECTURE.md, from the composition (app, cli, config,
// main) through admin, proxy, authz, authn and identity to spiffe and the generic base. Today's exceptions
// are listed with the reason; the list may only shrink (an exception that no longer exists fails too).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Layers, lowest first: a file may import from its own layer and the ones below. */
const LAYERS: readonly (readonly string[])[] = [
  [
    'errors.ts',
    'duration.ts',
    'flag-file.ts',
    'file-watcher.ts',
    'listener.ts',
    'log.ts',
    'reloading-file.ts',
    'teardown.ts',
    'path-match.ts',
    'node-http.ts',
  ],
  ['spiffe'],
  ['identity'],
  ['authn'],
  ['authz'],
  // The outbound routes' OAuth client: token requests and their cache, below the proxy that sends them.
  ['outbound'],
  ['proxy'],
  ['admin'],
  [
    'certs',
    'dev',
    'config',
    'config.ts',
    'config-file.ts',
    'cli.ts',
    'webhook',
    'jwt-mode.ts',
    'outbound-routes.ts',
    'workers.ts',
    'warm-compile-cache.ts',
  ],
  ['app.ts', 'demo.ts', 'main.ts', 'index.ts'],
];

/** Upward edges that exist today, "from → to" by layer unit, each with why it is still there. */
const EXCEPTIONS: Readonly<Record<string, string>> = {};

/** The layer unit of a file: its top-level folder, or the file itself at the top level. */
function unitOf(file: string): string {
  return file.includes('/') ? file.slice(0, file.indexOf('/')) : file;
}

function layerOf(file: string): number {
  const unit = unitOf(file);
  const layer = LAYERS.findIndex((units) => units.includes(unit));
  if (layer === -1) throw new Error(`${file}: in no layer; add ${unit} to LAYERS`);
  return layer;
}

function importGraph(): Map<string, string[]> {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(join(SRC, file), 'utf8');
    const targets = new Set<string>();
    const specifiers = [
      ...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?from\s+['"](\.[^'"]+)['"]/g),
      ...text.matchAll(/import\(\s*['"](\.[^'"]+)['"]\s*\)/g),
    ].map((m) => m[1]);
    for (const specifier of specifiers) {
      targets.add(relative(SRC, resolve(dirname(join(SRC, file)), specifier.replace(/\.js$/, '.ts'))));
    }
    graph.set(file, [...targets]);
  }
  return graph;
}

/** Strongly connected components of more than one file (Tarjan): each is a circle of imports. */
function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop() as string;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

const graph = importGraph();

describe('imports flow downward and never in a circle', () => {
  it('every import resolves to a file of src/', () => {
    const missing = [...graph].flatMap(([from, targets]) =>
      targets.filter((t) => !graph.has(t)).map((t) => `${from} → ${t}`),
    );
    expect(missing).toEqual([]);
  });

  it('no circle of imports', () => {
    expect(circles(graph)).toEqual([]);
  });

  it('no import reaches up a layer, beyond the listed exceptions, and every exception still exists', () => {
    const upward = new Map<string, string[]>();
    for (const [from, targets] of graph) {
      for (const to of targets) {
        if (!graph.has(to) || layerOf(to) <= layerOf(from)) continue;
        const edge = `${unitOf(from)} → ${unitOf(to)}`;
        upward.set(edge, [...(upward.get(edge) ?? []), `${from} → ${to}`]);
      }
    }
    const unexplained = [...upward].filter(([edge]) => !(edge in EXCEPTIONS)).map(([, files]) => files);
    expect(unexplained).toEqual([]);
    expect(Object.keys(EXCEPTIONS).filter((edge) => !upward.has(edge))).toEqual([]);
  });
});
