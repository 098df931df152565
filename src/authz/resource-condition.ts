// A rule's `where:` conditions: a segment its path template bound equals what the judged credential carries
// (a claim, a segment or the trust domain of its SPIFFE ID, its API key name) or one of some literals. A value
// the credential does not have never matches: `undefined` equals nothing. Parsing returns a message, never throws.
import type { PeerIdentity } from '../authn/identity.js';
import { claimAt } from './claim-condition.js';
import { parseClaimPath } from './claim-path.js';
import type { Binding } from './path-template.js';

/** Something of the judged credential, named in `equals:`. */
export type CallerValue =
  | { readonly kind: 'claim'; readonly path: readonly string[] }
  | { readonly kind: 'id_segment'; readonly index: number }
  | { readonly kind: 'trust_domain' }
  | { readonly kind: 'key_name' };

export interface ResourceCondition {
  /** The `segment:` as written (`owner`, or `owner/repo` for several joined), for messages. */
  readonly segment: string;
  /** Indexes into the template's bindings; their values joined with `/` are compared. */
  readonly bindings: readonly number[];
  readonly equals?: CallerValue;
  readonly in?: ReadonlySet<string>;
}

const ID_SEGMENT = /^id\.segment\[(0|[1-9][0-9]{0,3})\]$/;
/** A SPIFFE ID is at most 2048 bytes, so it has fewer path segments than this. */
const MAX_ID_SEGMENT = 1024;

export const CALLER_VALUE_HOW =
  'expected claims.<claim path> (claims.sub, claims."kubernetes.io".namespace), id.segment[N] (0 is the first ' +
  'segment after the trust domain), id.trust_domain or key.name; to compare with fixed values write in: [a, b]';

/** `claims.sub`, `id.segment[1]`, `id.trust_domain`, `key.name`; or why `text` is none of them. */
export function parseCallerValue(text: string): CallerValue | string {
  if (text.startsWith('claims.')) {
    const path = parseClaimPath(text.slice('claims.'.length));
    return typeof path === 'string' ? `the claim path ${path}` : { kind: 'claim', path };
  }
  if (text === 'id.trust_domain') return { kind: 'trust_domain' };
  if (text === 'key.name') return { kind: 'key_name' };
  const segment = ID_SEGMENT.exec(text);
  if (segment && Number(segment[1]) < MAX_ID_SEGMENT) return { kind: 'id_segment', index: Number(segment[1]) };
  return `${JSON.stringify(text)}: ${CALLER_VALUE_HOW}`;
}

/**
 * A claim as path text: a string as it is; a whole number as its decimal digits (`42` is "42", never "042" or
 * "4.2e1"), since a path holds only text and numeric user ids exist. A number JSON may already have rounded
 * (beyond 2^53), a fraction, a boolean or anything else is no value: comparing it would guess.
 */
function claimText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return undefined;
}

/** The value `ref` names in the credential, or undefined when it has none. */
export function callerValue(ref: CallerValue, caller: PeerIdentity): string | undefined {
  switch (ref.kind) {
    case 'claim': {
      const claims = caller.method !== 'mtls' && caller.method !== 'api-key' ? caller.claims : undefined;
      return claims ? claimText(claimAt(claims, ref.path)) : undefined;
    }
    case 'id_segment':
      // The path of a parsed SPIFFE ID has no empty or dot segments (spiffe/id.ts).
      return caller.id?.path.split('/')[ref.index + 1];
    case 'trust_domain':
      return caller.id?.trustDomain;
    case 'key_name':
      return caller.method === 'api-key' ? caller.name : undefined;
  }
}

/** Whether every condition holds for these bindings (a template's, in its order) and this credential. */
export function resourceConditionsHold(
  conditions: readonly ResourceCondition[],
  bindings: readonly Binding[],
  caller: PeerIdentity,
): boolean {
  return conditions.every((c) => {
    const values = c.bindings.map((i) => bindings[i]?.value);
    if (values.some((v) => v === undefined)) return false;
    const resource = values.join('/');
    if (c.in) return c.in.has(resource);
    return c.equals !== undefined && callerValue(c.equals, caller) === resource;
  });
}
