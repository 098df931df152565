// Conditions on verified token claims: `equals`, `in`, and `contains` (an array claim such as Keycloak's
// `realm_access.roles`, or a space-separated string such as OAuth's `scope`). The claim is named by a
// path of keys into nested objects (claim-path.ts), parsed once when the policy is compiled; only own
// properties are followed, so `__proto__` or `constructor` never resolve to anything the token did not hold.

export type Scalar = string | number | boolean;

/** `claim` is the path as written (for messages); `path` is its keys, which is what is looked up. */
export type ClaimCondition =
  | { claim: string; path: readonly string[]; equals: Scalar }
  | { claim: string; path: readonly string[]; in: readonly Scalar[] }
  | { claim: string; path: readonly string[]; contains: Scalar };

/** The value at a path of keys (`['realm_access', 'roles']`), or undefined. */
export function claimAt(claims: Readonly<Record<string, unknown>>, path: readonly string[]): unknown {
  let node: unknown = claims;
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    if (node === null || typeof node !== 'object' || Array.isArray(node) || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function isScalar(value: unknown): value is Scalar {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

/** Strict comparison: `"1"` is not `1`, `"true"` is not `true`. */
export function conditionHolds(condition: ClaimCondition, claims: Readonly<Record<string, unknown>>): boolean {
  const value = claimAt(claims, condition.path);
  if ('equals' in condition) return isScalar(value) && value === condition.equals;
  if ('in' in condition) return isScalar(value) && condition.in.includes(value);
  if (Array.isArray(value)) return value.some((v) => isScalar(v) && v === condition.contains);
  if (typeof value === 'string' && typeof condition.contains === 'string') {
    return value.split(' ').includes(condition.contains);
  }
  return false;
}
