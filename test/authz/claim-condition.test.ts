// Claim conditions on verified token claims: strict `equals` and `in`, `contains` over arrays and
// space-separated strings, dotted paths into nested objects, and nothing from the prototype chain.
import { describe, expect, it } from 'vitest';
import { type ClaimCondition, claimAt, conditionHolds } from '../../src/authz/claim-condition.js';

/** A condition as the tables write it: the path is split at every dot, as the tables' paths need. */
type Written<C = ClaimCondition> = C extends unknown ? Omit<C, 'path'> : never;
const compiled = (condition: Written): ClaimCondition =>
  ({ ...condition, path: condition.claim.split('.') }) as ClaimCondition;

const CLAIMS: Record<string, unknown> = {
  sub: 'alice',
  n: 1,
  s1: '1',
  t: true,
  st: 'true',
  zero: 0,
  empty: '',
  nil: null,
  scope: 'orders:read orders:write',
  realm_access: { roles: ['sandbox:invoke', 'offline_access', 7, true] },
  resource_access: { sandbox: { roles: ['admin'] } },
  list: ['a', 'b'],
  nested_list: [['admin']],
  obj: { a: 1 },
  'kubernetes.io': { namespace: 'prod' },
};

describe('claimAt: a dotted path follows own properties of plain objects only', () => {
  const cases: [path: string, value: unknown][] = [
    ['sub', 'alice'],
    ['realm_access.roles', ['sandbox:invoke', 'offline_access', 7, true]],
    ['resource_access.sandbox.roles', ['admin']],
    ['obj.a', 1],
    ['obj', { a: 1 }],
    ['nil', null],
    ['missing', undefined],
    ['obj.missing', undefined],
    ['sub.length', undefined],
    ['list.0', undefined],
    ['list.length', undefined],
    ['realm_access.roles.0', undefined],
    ['nil.x', undefined],
    ['n.toFixed', undefined],
    // the prototype chain is never followed
    ['__proto__', undefined],
    ['constructor', undefined],
    ['constructor.name', undefined],
    ['toString', undefined],
    ['hasOwnProperty', undefined],
    ['obj.__proto__', undefined],
    ['obj.constructor', undefined],
    ['__proto__.constructor', undefined],
    ['realm_access.constructor.prototype', undefined],
    // unquoted, a claim name with a dot is split at every dot (claim-path.ts quotes it: "kubernetes.io")
    ['kubernetes.io.namespace', undefined],
  ];
  it.each(cases)('%s → %j', (path, value) => {
    expect(claimAt(CLAIMS, path.split('.'))).toEqual(value);
  });

  it('claims parsed from a token (JSON) resolve the same way', () => {
    const parsed = JSON.parse('{"sub":"x","realm_access":{"roles":["admin"]}}') as Record<string, unknown>;
    expect(claimAt(parsed, ['constructor'])).toBeUndefined();
    expect(claimAt(parsed, ['__proto__'])).toBeUndefined();
    expect(claimAt(parsed, ['realm_access', 'roles'])).toEqual(['admin']);
  });
});

describe('conditionHolds', () => {
  const cases: [name: string, condition: Written, holds: boolean][] = [
    // equals: strict, scalars only
    ['equals a string', { claim: 'sub', equals: 'alice' }, true],
    ['equals another string', { claim: 'sub', equals: 'bob' }, false],
    ['equals is case-sensitive', { claim: 'sub', equals: 'Alice' }, false],
    ['equals a number', { claim: 'n', equals: 1 }, true],
    ['"1" is not 1', { claim: 's1', equals: 1 }, false],
    ['1 is not "1"', { claim: 'n', equals: '1' }, false],
    ['true is not "true"', { claim: 't', equals: 'true' }, false],
    ['"true" is not true', { claim: 'st', equals: true }, false],
    ['equals a boolean', { claim: 't', equals: true }, true],
    ['0 is not false', { claim: 'zero', equals: false }, false],
    ['"" is not false', { claim: 'empty', equals: false }, false],
    ['equals the empty string', { claim: 'empty', equals: '' }, true],
    ['null equals nothing', { claim: 'nil', equals: 'null' }, false],
    ['a missing claim equals nothing', { claim: 'missing', equals: '' }, false],
    ['an array never equals', { claim: 'list', equals: 'a' }, false],
    ['an object never equals', { claim: 'obj', equals: '[object Object]' }, false],
    ['equals on a nested claim', { claim: 'obj.a', equals: 1 }, true],
    ['equals via the prototype chain', { claim: 'constructor.name', equals: 'Object' }, false],
    // in: one of a list, strict
    ['in a list', { claim: 'sub', in: ['bob', 'alice'] }, true],
    ['not in a list', { claim: 'sub', in: ['bob', 'carol'] }, false],
    ['in is strict: "1" vs 1', { claim: 's1', in: [1, 2] }, false],
    ['in with numbers', { claim: 'n', in: [1, 2] }, true],
    ['in with booleans', { claim: 't', in: [false, true] }, true],
    ['an array claim is never in a list', { claim: 'list', in: ['a', 'b'] }, false],
    ['a missing claim is in nothing', { claim: 'missing', in: ['', 'x'] }, false],
    // contains: an array claim
    ['contains in an array', { claim: 'realm_access.roles', contains: 'sandbox:invoke' }, true],
    ['does not contain', { claim: 'realm_access.roles', contains: 'admin' }, false],
    ['contains is not a substring match', { claim: 'realm_access.roles', contains: 'sandbox' }, false],
    ['contains a number, strictly', { claim: 'realm_access.roles', contains: 7 }, true],
    ['contains "7" is not 7', { claim: 'realm_access.roles', contains: '7' }, false],
    ['contains a boolean', { claim: 'realm_access.roles', contains: true }, true],
    ['contains on a deeper path', { claim: 'resource_access.sandbox.roles', contains: 'admin' }, true],
    ['contains does not look into nested arrays', { claim: 'nested_list', contains: 'admin' }, false],
    // contains: a space-separated string (OAuth scope)
    ['contains a scope', { claim: 'scope', contains: 'orders:write' }, true],
    ['contains a scope, not a substring', { claim: 'scope', contains: 'orders' }, false],
    ['contains a scope, not a prefix of one', { claim: 'scope', contains: 'orders:re' }, false],
    ['contains the only word of a string', { claim: 'sub', contains: 'alice' }, true],
    ['contains a number in a string: never', { claim: 's1', contains: 1 }, false],
    ['contains on a number claim: never', { claim: 'n', contains: 1 }, false],
    ['contains on an object: never', { claim: 'obj', contains: 'a' }, false],
    ['contains on a missing claim: never', { claim: 'missing', contains: 'x' }, false],
  ];
  it.each(cases)('%s', (_name, condition, holds) => {
    expect(conditionHolds(compiled(condition), CLAIMS)).toBe(holds);
  });
});
