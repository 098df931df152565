// Validates Kubernetes objects as strictly as `kubectl apply --validate=strict`: kubernetes-models'
// JSON schema (types, required fields, enums) plus a pass that refuses fields the API does not have,
// read from the models' own type declarations (their schema allows unknown fields, which the API server
// would prune or refuse: a typo such as `mountPropogation` must fail a test, not vanish in a cluster).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const MODELS = dirname(require.resolve('kubernetes-models'));

interface Declaration {
  /** Field name → the TypeScript type text; undefined for a type alias (string, IntOrString…). */
  fields: Map<string, string> | undefined;
  /** Imported type name → its declaration file. */
  imports: Map<string, string>;
}

const declarations = new Map<string, Declaration>();

function packageRoot(name: string): string {
  return dirname(require.resolve(name, { paths: [MODELS] }));
}

function declarationFile(fromFile: string, specifier: string): string {
  if (specifier.startsWith('.')) return `${resolve(dirname(fromFile), specifier)}.d.ts`;
  const parts = specifier.split('/');
  const pkg = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  const rest = parts.slice(pkg.split('/').length).join('/');
  return `${join(packageRoot(pkg), rest)}.d.ts`;
}

function declaration(file: string): Declaration {
  const cached = declarations.get(file);
  if (cached) return cached;
  const text = readFileSync(file, 'utf8');
  const imports = new Map<string, string>();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm))
    imports.set(m[1], declarationFile(file, m[2]));
  const body = /^export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/m.exec(text);
  let fields: Map<string, string> | undefined;
  if (body) {
    fields = new Map();
    // Properties sit at four spaces: `    "name"?: Type;`, where Type may span lines (a map, an inline
    // object); doc comments are dropped first so their text cannot unbalance the brackets.
    const lines = body[1].split('\n').filter((l) => !/^\s*(\/\*\*|\*)/.test(l));
    for (let i = 0; i < lines.length; i++) {
      const start = /^ {4}"([^"]+)"\??: (.*)$/.exec(lines[i]);
      if (!start) continue;
      let type = start[2];
      const depth = (t: string) => (t.match(/[{<]/g) ?? []).length - (t.match(/[}>]/g) ?? []).length;
      while (depth(type) > 0 && i + 1 < lines.length) type += `\n${lines[++i]}`;
      const map = /^\{\n\s+\[key: string\]: (\w+);\n\s+\};$/.exec(type);
      fields.set(start[1], map ? `{ [key: string]: ${map[1]} }` : type.replace(/;$/, ''));
    }
  }
  const parsed = { fields, imports };
  declarations.set(file, parsed);
  return parsed;
}

function checkValue(value: unknown, type: string, file: string, at: string, problems: string[]): void {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) {
    if (Array.isArray(value)) value.forEach((v, i) => checkValue(v, array[1], file, `${at}[${i}]`, problems));
    return;
  }
  const map = /^\{ \[key: string\]: (.+) \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) checkValue(v, map[1], file, `${at}.${k}`, problems);
    }
    return;
  }
  const target = /^\w+$/.test(type) ? declaration(file).imports.get(type) : undefined;
  if (target) checkFields(value, target, at, problems);
}

function checkFields(value: unknown, file: string, at: string, problems: string[]): void {
  const { fields } = declaration(file);
  if (!fields || typeof value !== 'object' || value === null || Array.isArray(value)) return;
  for (const [key, v] of Object.entries(value)) {
    const type = fields.get(key);
    if (type === undefined) problems.push(`${at}: unknown field "${key}"`);
    else checkValue(v, type, file, `${at}.${key}`, problems);
  }
}

/** The module path of a kind in kubernetes-models, e.g. apps/v1 DaemonSet → apps/v1/DaemonSet. */
export function modelPath(apiVersion: string, kind: string): string {
  return apiVersion.includes('/') ? `${apiVersion}/${kind}` : `v1/${kind}`;
}

/** Whether kubernetes-models knows this kind (custom resources are checked against their CRD instead). */
export function isBuiltInKind(apiVersion: string, kind: string): boolean {
  try {
    require.resolve(join(MODELS, `${modelPath(apiVersion, kind)}.js`));
    return true;
  } catch {
    return false;
  }
}

/** Throws with every problem found: schema errors first, then unknown fields. */
export async function validateKubernetesObject(object: {
  apiVersion: string;
  kind: string;
  [field: string]: unknown;
}): Promise<void> {
  const path = modelPath(object.apiVersion, object.kind);
  const module = (await import(pathToFileURL(join(MODELS, `${path}.mjs`)).href)) as Record<
    string,
    new (data: unknown) => { validate(): void }
  >;
  const Model = module[object.kind];
  if (!Model) throw new Error(`kubernetes-models has no ${object.apiVersion} ${object.kind}`);
  const name = `${object.kind} ${(object as { metadata?: { name?: string } }).metadata?.name ?? ''}`;
  try {
    new Model(object).validate();
  } catch (err) {
    throw new Error(`${name}: ${(err as Error).message}`);
  }
  const problems: string[] = [];
  checkFields(object, join(MODELS, `${path}.d.ts`), object.kind, problems);
  if (problems.length > 0) throw new Error(`${name}: ${problems.join('; ')}`);
}
