// `--config FILE`: the same options as the command line, in YAML, keyed by flag name. The schema is the
// flag table itself (types, repeatable or not), so the file can never drift from the flags. Any problem
// throws ERR_CONFIG_INVALID naming the file and the key.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { didYouMean } from './config/option-spec.js';
import { SidecarError } from './errors.js';

// YAML is loaded only when a --config file is given (the command line parser is synchronous).
const require = createRequire(import.meta.url);

export interface OptionShape {
  type: 'string' | 'boolean';
  multiple?: boolean;
}

/** Why a file cannot be read, in words (the errno code alone means nothing to most operators). */
function readProblem(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EISDIR':
      return 'a directory; give the YAML file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    default:
      return err.code ?? err.message;
  }
}

/** Line and column (1-based) of a character offset in `text`. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

export function readConfigFile(path: string, schema: Record<string, OptionShape>): Record<string, unknown> {
  const bad = (why: string): never => {
    throw new SidecarError('ERR_CONFIG_INVALID', `--config ${path}: ${why}`);
  };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return bad(`cannot read the file (${readProblem(err as NodeJS.ErrnoException)})`);
  }
  // failsafe: every scalar is the string exactly as written (a hint "007" stays "007", not 7).
  const { parseDocument, isMap, isScalar } = require('yaml') as typeof Yaml;
  const doc = parseDocument(text, { uniqueKeys: true, schema: 'failsafe', prettyErrors: false });
  const [first] = doc.errors;
  if (first) bad(`not valid YAML (${lineColumn(text, first.pos[0])}: ${first.message.split('\n')[0]})`);
  let document: unknown;
  try {
    document = doc.toJS({ maxAliasCount: 0 });
  } catch (err) {
    return bad(`not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  if (document === null || document === undefined) return {};
  if (typeof document !== 'object' || Array.isArray(document)) bad('expected a mapping of flag names to values');
  /** ` (line N, column M)` of a top-level key, for messages about it. */
  const at = (key: string): string => {
    const pair = isMap(doc.contents)
      ? doc.contents.items.find((p) => isScalar(p.key) && p.key.value === key)
      : undefined;
    const range = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
    return range ? ` (${lineColumn(text, range[0])})` : '';
  };
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(document as Record<string, unknown>)) {
    // Own keys only: `constructor` or `toString` must not pass as flags.
    if (!Object.hasOwn(schema, key) || key === 'config') {
      const flag = key.replace(/^-+/, '');
      const near = didYouMean(flag, Object.keys(schema));
      const why =
        key === 'config'
          ? 'a --config file cannot name another'
          : flag !== key && Object.hasOwn(schema, flag)
            ? `write the flag name without "--": ${flag}`
            : near
              ? `did you mean ${near}?`
              : 'keys are the flag names without "--", e.g. upstream, allow';
      bad(`unknown key "${key}"${at(key)}; ${why}`);
    }
    const shape = schema[key];
    const scalar = (v: unknown): string | boolean => {
      if (shape.type === 'boolean') {
        if (v !== 'true' && v !== 'false') bad(`"${key}" must be true or false, not ${JSON.stringify(v)}${at(key)}`);
        return v === 'true';
      }
      if (typeof v !== 'string') bad(`"${key}" must be a string${at(key)}`);
      return v as string;
    };
    if (shape.multiple) {
      const list = Array.isArray(value) ? value : [value];
      out[key] = list.map(scalar);
    } else {
      if (Array.isArray(value)) bad(`"${key}" takes one value, not a list${at(key)}`);
      out[key] = scalar(value);
    }
  }
  return out;
}
