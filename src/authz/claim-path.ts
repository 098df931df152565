// Claim paths: the text that names a claim in a rule or a header mapping (`realm_access.roles`,
// `"kubernetes.io".namespace`), parsed into keys once at startup. Nothing here throws: a path that cannot
// be parsed comes back as a message that says how to write it, for the caller to put in its own error.
//
// Syntax, kept small and strict so that one text names one claim and every mistake is refused:
//   - names are separated by `.`; no empty name, no leading or trailing dot;
//   - a bare name is any characters but `.`, `"`, whitespace and control characters;
//   - a quoted name (`"kubernetes.io"`) holds any printable characters but `"` and `\` (no escapes:
//     nothing a real claim name needs, and one less way to write the same path twice);
//   - invisible characters (Unicode control, format and lone surrogate code points) are refused in both
//     forms: two paths that look alike must not name different claims;
//   - at most 16 names and 256 characters.
// `__proto__`, `constructor` and `prototype` are ordinary names: a claim lookup follows own properties
// only (claim-condition.ts), so they reach a token's own claim of that name (JSON.parse makes one) and
// never Object.prototype; refusing them would protect nothing.

export const MAX_CLAIM_PATH_NAMES = 16;
export const MAX_CLAIM_PATH_LENGTH = 256;

const HOW =
  'write claim names separated by dots, such as realm_access.roles, and put a name that has a dot or a ' +
  'space in double quotes: "kubernetes.io".namespace';

const QUOTED_HOW = 'a quoted name holds printable characters but " and \\, with no escapes';

/** Characters that end or spoil a bare name; one test per character of a path, compiled once. */
const NOT_BARE = /["\s\p{Cc}\p{Cf}\p{Cs}]/u;
const WHITESPACE = /\s/u;
/** Characters a quoted name cannot hold. */
const NOT_QUOTABLE = /["\\\p{Cc}\p{Cf}\p{Cs}]/u;

/** Character `index` (0-based) as people count them, for messages. */
const at = (index: number) => `at character ${index + 1}`;

/** The keys of a claim path, or why `text` is not one (a message that ends with how to write it). */
export function parseClaimPath(text: string): readonly string[] | string {
  if (text === '') return `is empty; ${HOW}`;
  if (text.length > MAX_CLAIM_PATH_LENGTH) return `is longer than ${MAX_CLAIM_PATH_LENGTH} characters; ${HOW}`;
  const names: string[] = [];
  let i = 0;
  for (;;) {
    if (names.length === MAX_CLAIM_PATH_NAMES) return `has more than ${MAX_CLAIM_PATH_NAMES} names; ${HOW}`;
    if (i === 0 && text[i] === '.') return `starts with a dot; ${HOW}`;
    if (i === text.length) return `ends with a dot; ${HOW}`;
    if (text[i] === '.') return `has an empty name ${at(i)}; ${HOW}`;
    if (text[i] === '"') {
      const close = text.indexOf('"', i + 1);
      if (close === -1) return `has a quote ${at(i)} that is never closed; ${HOW}`;
      const name = text.slice(i + 1, close);
      if (name === '') return `has an empty quoted name ${at(i)}; ${HOW}`;
      const bad = NOT_QUOTABLE.exec(name);
      if (bad) {
        const what = bad[0] === '\\' ? 'a backslash' : 'a control or invisible character';
        return `has ${what} ${at(i + 1 + bad.index)} in a quoted name; ${QUOTED_HOW}`;
      }
      names.push(name);
      i = close + 1;
      if (i < text.length && text[i] !== '.') return `needs a dot after the quoted name ${at(i)}; ${HOW}`;
    } else {
      let end = text.indexOf('.', i);
      if (end === -1) end = text.length;
      const name = text.slice(i, end);
      const bad = NOT_BARE.exec(name);
      if (bad) {
        const what =
          bad[0] === '"'
            ? 'a quote inside a name (a quote may only open a name)'
            : WHITESPACE.test(bad[0])
              ? 'whitespace'
              : 'a control or invisible character';
        return `has ${what} ${at(i + bad.index)}; ${HOW}`;
      }
      names.push(name);
      i = end;
    }
    if (i === text.length) return names;
    i++; // the dot
  }
}

/**
 * The path as it would be written, for messages: names quoted where they must be. A name no path can
 * write (one with `"`, `\` or an invisible character) is shown as a JSON string, so a message never
 * carries a raw control character.
 */
export function formatClaimPath(path: readonly string[]): string {
  return path
    .map((name) => {
      if (name !== '' && !NOT_BARE.test(name) && !name.includes('.')) return name;
      return name !== '' && !NOT_QUOTABLE.test(name) ? `"${name}"` : JSON.stringify(name);
    })
    .join('.');
}
