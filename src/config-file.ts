// `--config FILE`: the same options as the command line, in YAML, keyed by flag name. The schema is the
// flag table itself (types, repeatable or not), so the file can never drift from the flags. Any problem
// throws ERR_CONFIG_INVALID naming the file and the key.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { SidecarError } from './errors.js';

// YAML is loaded only when a --config file is given (the command line parser is synchronous).
const require = createRequire(import.meta.url);

export interface OptionShape {
  type: 'string' | 'boolean';
  multiple?: boolean;
}

export function readConfigFile(path: string, schema: Record<string, OptionShape>): Record<string, unknown> {
  const bad = (why: string): never => {
    throw new SidecarError('ERR_CONFIG_INVALID', `--config ${path}: ${why}`);
  };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return bad(`cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let document: unknown;
  try {
    // failsafe: every scalar is the string exactly as written (a hint "007" stays "007", not 7).
    const { parse } = require('yaml') as typeof Yaml;
    document = parse(text, { uniqueKeys: true, maxAliasCount: 0, schema: 'failsafe' });
  } catch (err) {
    return bad(`not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  if (document === null || document === undefined) return {};
  if (typeof document !== 'object' || Array.isArray(document)) bad('expected a mapping of flag names to values');
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(document as Record<string, unknown>)) {
    // Own keys only: `constructor` or `toString` must not pass as flags.
    if (!Object.hasOwn(schema, key) || key === 'config') {
      bad(`unknown key "${key}"; keys are the flag names without "--", e.g. upstream, allow`);
    }
    const shape = schema[key];
    const scalar = (v: unknown): string | boolean => {
      if (shape.type === 'boolean') {
        if (v !== 'true' && v !== 'false') bad(`"${key}" must be true or false`);
        return v === 'true';
      }
      if (typeof v !== 'string') bad(`"${key}" must be a string`);
      return v as string;
    };
    if (shape.multiple) {
      const list = Array.isArray(value) ? value : [value];
      out[key] = list.map(scalar);
    } else {
      if (Array.isArray(value)) bad(`"${key}" takes one value, not a list`);
      out[key] = scalar(value);
    }
  }
  return out;
}
