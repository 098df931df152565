// JSONPatch (RFC 6902) `add` operations for the admission response, with JSON Pointers escaped per
// RFC 6901 (`~` → `~0`, `/` → `~1`: annotation keys contain `/`). Adding to an array that does not
// exist creates it: `add` into a missing parent is an error in RFC 6902.

export interface AddOperation {
  op: 'add';
  path: string;
  value: unknown;
}

/** A JSON Pointer from unescaped reference tokens. */
export function pointer(...tokens: (string | number)[]): string {
  return tokens.map((t) => `/${String(t).replaceAll('~', '~0').replaceAll('/', '~1')}`).join('');
}

/**
 * Adds `items` to the array at `path` (whose current value is `current`): at the front (in order) or
 * at the end; or creates the array when it is missing.
 */
export function addToArray(current: unknown, path: string[], items: unknown[], where: 'front' | 'end'): AddOperation[] {
  if (items.length === 0) return [];
  if (!Array.isArray(current)) return [{ op: 'add', path: pointer(...path), value: items }];
  return items.map((value, i) => ({ op: 'add', path: pointer(...path, where === 'front' ? i : '-'), value }));
}

/** Sets one key of the object at `path`, creating the object when it is missing. */
export function addToObject(current: unknown, path: string[], key: string, value: unknown): AddOperation[] {
  if (current === null || typeof current !== 'object' || Array.isArray(current)) {
    return [{ op: 'add', path: pointer(...path), value: { [key]: value } }];
  }
  return [{ op: 'add', path: pointer(...path, key), value }];
}
