// SPIFFE ID parsing (SPIFFE-ID.md §2): a strict byte-level parser. It never normalizes and never uses
// `new URL()` (which would turn `spiffe://td/a/../b` into `spiffe://td/b`). Invalid input throws a
// SidecarError with code ERR_INVALID_SPIFFE_ID or ERR_INVALID_TRUST_DOMAIN.
import { SidecarError } from '../errors.js';

export interface SpiffeId {
  /** The trust domain name, e.g. `example.org`. */
  readonly trustDomain: string;
  /** The path including its leading slash, or `''` for a trust-domain ID. */
  readonly path: string;
  /** The canonical string form, byte-identical to the parsed input. */
  toString(): string;
}

const SCHEME = 'spiffe://';
/** SPIFFE-ID.md §2.3: implementations must support 2048 bytes; we refuse more as a DoS guard. */
export const MAX_SPIFFE_ID_LENGTH = 2048;
/** RFC 3986 host limit, which SPIFFE-ID.md §2.3 applies to trust domain names. */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

function isTrustDomainChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x5f || c === 0x2d;
}

function isPathChar(c: number): boolean {
  return isTrustDomainChar(c) || (c >= 0x41 && c <= 0x5a);
}

/** Quote untrusted input for an error message: bounded and with control bytes escaped. */
export function quoteInput(input: string): string {
  const shown = input.length > 80 ? `${input.slice(0, 80)}...` : input;
  return JSON.stringify(shown);
}

function idError(input: string, why: string): SidecarError {
  return new SidecarError('ERR_INVALID_SPIFFE_ID', `invalid SPIFFE ID ${quoteInput(input)}: ${why}`);
}

/** Checks a trust domain name; returns the reason it is invalid, or undefined. */
function trustDomainProblem(name: string): string | undefined {
  if (name.length === 0) return 'trust domain is missing';
  if (name.length > MAX_TRUST_DOMAIN_LENGTH) {
    return `trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} bytes`;
  }
  for (let i = 0; i < name.length; i++) {
    if (!isTrustDomainChar(name.charCodeAt(i))) {
      return 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
    }
  }
  return undefined;
}

/** Checks a path (with leading slash, non-empty); returns the reason it is invalid, or undefined. */
function pathProblem(path: string): string | undefined {
  let segmentStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const segment = path.slice(segmentStart, i);
      if (segment.length === 0) {
        return i === path.length ? 'path cannot have a trailing slash' : 'path cannot contain empty segments';
      }
      if (segment === '.' || segment === '..') return 'path cannot contain dot segments';
      segmentStart = i + 1;
    } else if (!isPathChar(c)) {
      return 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';
    }
  }
  return undefined;
}

/** `: did you mean "spiffe://…"?` when another scheme, or none, is all that is wrong with `input`. */
function schemeHint(input: string): string {
  const candidate = SCHEME + input.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//, '');
  if (candidate === input || candidate.length > MAX_SPIFFE_ID_LENGTH) return '';
  try {
    return `: did you mean ${quoteInput(parseSpiffeId(candidate).toString())}?`;
  } catch {
    return '';
  }
}

/** What is wrong with a trust domain name that is a URL or has upper-case letters, and what to write. */
function trustDomainAdvice(name: string, problem: string): string {
  const bare = name
    .replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//, '')
    .replace(/[/:].*$/, '')
    .toLowerCase();
  if (bare === name || trustDomainProblem(bare)) return problem;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(name))
    return `a trust domain is a name, not a URL: write ${bare} (${problem})`;
  return `${problem}; write ${bare}`;
}

function makeSpiffeId(trustDomain: string, path: string): SpiffeId {
  const text = `${SCHEME}${trustDomain}${path}`;
  return Object.freeze({ trustDomain, path, toString: () => text });
}

/** Parses a SPIFFE ID such as `spiffe://example.org/ns/prod/sa/api`. */
export function parseSpiffeId(input: string): SpiffeId {
  if (typeof input !== 'string') throw idError(String(input), 'must be a string');
  if (input.length === 0) throw idError(input, 'cannot be empty');
  if (input.length > MAX_SPIFFE_ID_LENGTH) {
    throw idError(input, `longer than ${MAX_SPIFFE_ID_LENGTH} bytes`);
  }
  if (!input.startsWith(SCHEME))
    throw idError(input, `scheme is missing or invalid (must be "spiffe://"${schemeHint(input)})`);
  const slash = input.indexOf('/', SCHEME.length);
  const trustDomain = slash === -1 ? input.slice(SCHEME.length) : input.slice(SCHEME.length, slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem) throw idError(input, tdProblem);
  if (slash === -1) return makeSpiffeId(trustDomain, '');
  const path = input.slice(slash);
  const problem = pathProblem(path);
  if (problem) throw idError(input, problem);
  return makeSpiffeId(trustDomain, path);
}

/**
 * Parses a trust domain given either as a bare name (`example.org`) or as a SPIFFE ID
 * (`spiffe://example.org` or `spiffe://example.org/any/path`), and returns its name.
 */
export function parseTrustDomain(input: string): string {
  if (typeof input === 'string' && input.startsWith(SCHEME)) {
    try {
      return parseSpiffeId(input).trustDomain;
    } catch (err) {
      throw new SidecarError('ERR_INVALID_TRUST_DOMAIN', (err as Error).message, { cause: err });
    }
  }
  const problem = typeof input === 'string' ? trustDomainProblem(input) : 'must be a string';
  if (problem) {
    const why = typeof input === 'string' ? trustDomainAdvice(input, problem) : problem;
    throw new SidecarError('ERR_INVALID_TRUST_DOMAIN', `invalid trust domain ${quoteInput(String(input))}: ${why}`);
  }
  return input;
}
