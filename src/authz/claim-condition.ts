// Conditions on verified token claims: `equals`, `in`, and `contains` (an array claim such as Keycloak's
// `realm_access.roles`, or a space-separated string such as OAuth's `scope`). The claim is named by a
// dotted path into nested objects; only own properties are followed, so `__proto__` or `constructor`
// never resolve to anything.

export type Scalar = string | number | boolean;

export type ClaimCondition =
  { claim: string; equals: Scalar } | { claim: string; in: readonly Scalar[] } | { claim: string; contains: Scalar };

/** The value at a dotted path (`realm_access.roles`), or undefined. */
export function claimAt(claims: Readonly<Record<string, unknown>>, path: string): unknown {
  let node: unknown = claims;
  for (const key of path.split('.')) {
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
  const value = claimAt(claims, condition.claim);
  if ('equals' in condition) return isScalar(value) && value === condition.equals;
  if ('in' in condition) return isScalar(value) && condition.in.includes(value);
  if (Array.isArray(value)) return value.some((v) => isScalar(v) && v === condition.contains);
  if (typeof value === 'string' && typeof condition.contains === 'string') {
    return value.split(' ').includes(condition.contains);
  }
  return false;
}
