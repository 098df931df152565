// Verified claims as request headers for the app, built per request from the mappings checked at startup
// (authz/claim-header-mapping.ts, re-exported here). Nothing here fails: a claim that is missing, of the
// wrong shape, or not safe to send is left out, never sent half-mangled.
//
// What is sent, for each mapping in order, when the claim is present:
//   - a string as it is; a finite number or a boolean as its JSON text (`7`, `true`);
//   - an array as an RFC 9110 list: its string, number and boolean elements joined by `, `, other
//     elements skipped; a string element that is empty, holds `,` or `"`, or starts or ends with a space
//     is written as a quoted-string (`"a,b"`, with `\"` and `\\`), so the app can split the list back;
//   - an object or null: nothing.
// Sanitising: a string (or list element) with any character but visible ASCII (0x21-0x7E) and space is
// dropped whole: no CR, LF, NUL, tab, DEL or non-ASCII ever reaches the app, and nothing is rewritten.
// A value longer than 8192 characters is not sent at all (a truncated list would silently lose entries),
// and neither is an empty one (an array of nothing sendable, an empty string): to the app, absent and
// empty look the same either way. The caller's own copies of every mapped header are stripped elsewhere.
import { claimAt } from '../authz/claim-condition.js';
import type { ClaimHeaderMapping } from '../authz/claim-header-mapping.js';

export type { ClaimHeaderMapping } from '../authz/claim-header-mapping.js';
export { compileClaimHeaders, parseClaimHeaderFlag } from '../authz/claim-header-mapping.js';

export const MAX_CLAIM_HEADER_VALUE_LENGTH = 8192;

const SAFE = /^[\x20-\x7e]*$/;
const NEEDS_QUOTES = /^$|^ | $|[,"]/;
const ESCAPED = /[\\"]/g;

/** A scalar claim as header text, or undefined when it cannot be sent. */
function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return SAFE.test(value) ? value : undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : undefined;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return undefined;
}

/** An array claim as an RFC 9110 list; stops as soon as it is too long, whatever the array's size. */
function listText(values: readonly unknown[]): string | undefined {
  let text = '';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    let element = scalarText(value);
    if (element === undefined) continue;
    if (typeof value === 'string' && NEEDS_QUOTES.test(element)) element = `"${element.replace(ESCAPED, '\\$&')}"`;
    text = text === '' ? element : `${text}, ${element}`;
    if (text.length > MAX_CLAIM_HEADER_VALUE_LENGTH) return undefined;
  }
  return text;
}

/**
 * The claim headers for one request, flat (`[name, value, name, value, ...]`) in mapping order, for the
 * claims that are present and sendable; empty without claims (mTLS and API-key callers).
 */
export function claimHeaderFields(
  claims: Readonly<Record<string, unknown>> | undefined,
  mappings: readonly ClaimHeaderMapping[],
): string[] {
  const fields: string[] = [];
  if (claims === undefined) return fields;
  for (let i = 0; i < mappings.length; i++) {
    const { path, header } = mappings[i];
    const value = claimAt(claims, path);
    const text = Array.isArray(value) ? listText(value) : scalarText(value);
    if (text === undefined || text === '' || text.length > MAX_CLAIM_HEADER_VALUE_LENGTH) continue;
    fields.push(header, text);
  }
  return fields;
}
