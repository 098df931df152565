// A command's flag table (OptionSpec per flag), how argv is parsed against one, and how `--help` lists
// it with its defaults. Each command owns its table; an unknown or malformed flag is ERR_CONFIG_INVALID.
import { parseArgs } from 'node:util';
import { SidecarError } from '../errors.js';
import { defaultInHelp, type FlagDefault } from './defaults.js';

/** One flag: its type, whether it repeats, and its help text (the default is added from the defaults table). */
export type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean; help: string; value?: string };

export type ParsedValues = Record<string, string | boolean | string[] | undefined>;

/** Parses `args` against `specs`; `usage` names the command in the error (`see '<usage> --help'`). */
export function parseOptions(
  args: string[],
  specs: Record<string, OptionSpec>,
  usage: string,
  positionals = false,
): { values: ParsedValues; positionals: string[] } {
  try {
    return parseArgs({
      args,
      options: Object.fromEntries(
        Object.entries(specs).map(([name, s]) => [name, { type: s.type, multiple: s.multiple ?? false }]),
      ),
      allowPositionals: positionals,
      allowNegative: true,
      strict: true,
    }) as { values: ParsedValues; positionals: string[] };
  } catch (err) {
    throw new SidecarError('ERR_CONFIG_INVALID', `${(err as Error).message}; see '${usage} --help'`, { cause: err });
  }
}

/** `help (a)` and `(default b)` read as `help (a; default b)`. */
export function withDefault(help: string, shown: string): string {
  if (!shown) return help;
  return help.endsWith(')') && shown.startsWith('(') ? `${help.slice(0, -1)}; ${shown.slice(1)}` : `${help} ${shown}`;
}

/**
 * The `--help` lines of a flag table: name, value placeholder, help text and the default from `defaults`,
 * which must have an entry for every flag (a flag without a default does not compile).
 */
export function describeOptions<K extends string>(
  specs: Readonly<Record<K, OptionSpec>>,
  defaults?: Readonly<Record<K, FlagDefault>>,
): string {
  return (Object.entries(specs) as [K, OptionSpec][])
    .map(([name, s]) => {
      const text = withDefault(s.help, defaultInHelp(name, defaults?.[name]));
      return `  --${`${name}${s.value ? ` ${s.value}` : ''}`.padEnd(30)} ${text}`;
    })
    .join('\n');
}
