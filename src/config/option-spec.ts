// A command's flag table (OptionSpec per flag), how argv is parsed against one, and how `--help` lists
// it with its defaults. Each command owns its table; an unknown or malformed flag is ERR_CONFIG_INVALID,
// in one line that names the flag, says what is wrong and how to write it (a typo gets a "did you mean",
// a flag of another command is named as such).
import { parseArgs } from 'node:util';
import { SidecarError } from '../errors.js';
import { defaultInHelp, type FlagDefault } from './defaults.js';

/** One flag: its type, whether it repeats, and its help text (the default is added from the defaults table). */
export type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean; help: string; value?: string };

export type ParsedValues = Record<string, string | boolean | string[] | undefined>;

/** Flag tables of the other commands, by command name (`certs init`): to say a flag belongs elsewhere. */
export type OtherCommands = Readonly<Record<string, Readonly<Record<string, OptionSpec>>>>;

/**
 * Parses `args` against `specs`; `usage` names the command in the error (`see '<usage> --help'`), and
 * `others` lets an unknown flag be recognized as another command's.
 */
export function parseOptions(
  args: string[],
  specs: Readonly<Record<string, OptionSpec>>,
  usage: string,
  positionals = false,
  others: OtherCommands = {},
): { values: ParsedValues; positionals: string[] } {
  const options = Object.fromEntries(
    Object.entries(specs).map(([name, s]) => [name, { type: s.type, multiple: s.multiple ?? false }]),
  );
  try {
    return parseArgs({
      args,
      options,
      allowPositionals: positionals,
      allowNegative: true,
      strict: true,
    }) as { values: ParsedValues; positionals: string[] };
  } catch (err) {
    const why = diagnose(args, specs, options, usage, positionals, others) ?? (err as Error).message.split('\n')[0];
    throw new SidecarError('ERR_CONFIG_INVALID', `${why}; see '${usage} --help'`, { cause: err });
  }
}

/** The first problem in `args`, in our words; undefined when parseArgs' own message must do. */
function diagnose(
  args: string[],
  specs: Readonly<Record<string, OptionSpec>>,
  options: Record<string, { type: 'string' | 'boolean'; multiple: boolean }>,
  usage: string,
  positionals: boolean,
  others: OtherCommands,
): string | undefined {
  const { tokens } = parseArgs({
    args,
    options,
    strict: false,
    allowPositionals: true,
    allowNegative: true,
    tokens: true,
  });
  const command = usage.replace(/^spiffe-sidecar /, '');
  let previous: (typeof tokens)[number] | undefined;
  for (const token of tokens) {
    if (token.kind === 'option-terminator') return undefined;
    if (token.kind === 'positional') {
      if (previous?.kind === 'option' && specs[previous.name]?.type === 'boolean' && !previous.inlineValue) {
        return `${previous.rawName} is a switch and takes no value, so ${JSON.stringify(token.value)} is left over: write ${previous.rawName} alone`;
      }
      if (!positionals)
        return `unexpected argument ${JSON.stringify(token.value)}: '${command}' takes only flags (--name value)`;
      previous = token;
      continue;
    }
    previous = token;
    const { name, rawName } = token;
    const spec = Object.hasOwn(specs, name) ? specs[name] : undefined;
    if (!spec) return unknownFlag(rawName, rawName.replace(/^-+/, ''), specs, command, others);
    if (rawName === `--no-${name}`) {
      if (spec.type === 'string')
        return `${rawName}: only an on/off switch has a --no- form; leave --${name} out instead`;
      continue;
    }
    if (spec.type === 'boolean') {
      if (token.inlineValue)
        return `${rawName} is a switch and takes no value: write --${name} to turn it on, --no-${name} to turn it off`;
      continue;
    }
    const example = `--${name} ${spec.value ?? 'VALUE'}`;
    if (token.value === undefined) return `${rawName} needs a value: ${example}`;
    if (!token.inlineValue && token.value.startsWith('-')) {
      const next = token.value.replace(/=.*/, '');
      const flagName = next.replace(/^--?(no-)?/, '');
      if (next.startsWith('--') || Object.hasOwn(specs, flagName) || next === '-h')
        return `${rawName} needs a value (${example}), but the flag ${next} follows it`;
      return `${rawName} ${JSON.stringify(token.value)}: a value that starts with "-" is written ${rawName}=${token.value}`;
    }
  }
  return undefined;
}

function unknownFlag(
  rawName: string,
  name: string,
  specs: Readonly<Record<string, OptionSpec>>,
  command: string,
  others: OtherCommands,
): string {
  if (!rawName.startsWith('--')) {
    if (rawName === '-v' || rawName === '-V')
      return `unknown flag ${rawName}; the version is 'spiffe-sidecar --version'`;
    return `unknown flag ${rawName}: flags are written in full, such as --${Object.keys(specs)[0]}`;
  }
  const owners = Object.entries(others)
    .filter(([other, table]) => other !== command && Object.hasOwn(table, name))
    .map(([other]) => `'${other}'`);
  if (owners.length > 0) return `${rawName} is a flag of ${owners.join(' and ')}, not of '${command}'`;
  const near = didYouMean(name, Object.keys(specs));
  if (near) return `unknown flag ${rawName} (did you mean --${near}?)`;
  return `unknown flag ${rawName}`;
}

/** The flag or command `name` most likely meant: the same but for case, `_` or `-`; else one or two typos away. */
export function didYouMean(name: string, candidates: readonly string[]): string | undefined {
  const plain = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  const same = candidates.find((c) => plain(c) === plain(name));
  if (same) return same;
  const limit = name.length >= 8 ? 2 : 1;
  let best: { name: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const d = editDistance(name.toLowerCase(), candidate);
    if (d <= limit && (!best || d < best.distance)) best = { name: candidate, distance: d };
  }
  return best?.name;
}

/** Levenshtein distance, with a swap of two neighbours counted as one edit. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1);
    }
  }
  return rows[a.length][b.length];
}

/** `help (a)` and `(default b)` read as `help (a; default b)`. */
export function withDefault(help: string, shown: string): string {
  if (!shown) return help;
  return help.endsWith(')') && shown.startsWith('(') ? `${help.slice(0, -1)}; ${shown.slice(1)}` : `${help} ${shown}`;
}

/** The width of the flag column in `--help`. */
const FLAG_COLUMN = 30;

/** One `--help` line: the left column padded to `width`, then the text (on a line of its own if it must). */
export function helpLine(left: string, text: string, width = FLAG_COLUMN + 2): string {
  if (left.length >= width && text) return `  ${left}\n  ${''.padEnd(width)} ${text}`;
  return `  ${left.padEnd(width)} ${text}`.trimEnd();
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
      return helpLine(`--${name}${s.value ? ` ${s.value}` : ''}`, text);
    })
    .join('\n');
}
