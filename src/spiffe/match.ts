// Allow rules over SPIFFE IDs: an exact ID, a whole trust domain (`spiffe://td` or `spiffe://td/**`),
// `*` for exactly one path segment and a trailing `**` for one or more segments. Matching is by exact
// bytes on segment boundaries: never a prefix or suffix of a name. Bad rules throw ERR_INVALID_ALLOW_RULE.
import { SidecarError } from '../errors.js';
import { MAX_SPIFFE_ID_LENGTH, parseSpiffeId, quoteInput, type SpiffeId } from './id.js';

/** A compiled rule set: returns the text of the first matching rule, or undefined (default deny). */
export type IdMatcher = (id: SpiffeId) => string | undefined;

interface PatternRule {
  text: string;
  /** Position in the rule list: the first matching rule is the one reported. */
  index: number;
  trustDomain: string;
  /** Path segments; `*` matches one segment; a final `**` matches one or more. */
  segments: string[];
}

const RULE_HINT =
  'write an exact ID (spiffe://example.org/ns/prod/sa/api), a trust domain (spiffe://example.org or ' +
  'spiffe://example.org/**), or whole-segment wildcards (spiffe://example.org/ns/*/sa/api, spiffe://example.org/ns/prod/**)';

function ruleError(rule: string, why: string, cause?: unknown): SidecarError {
  return new SidecarError('ERR_INVALID_ALLOW_RULE', `invalid allow rule ${quoteInput(rule)}: ${why}; ${RULE_HINT}`, {
    cause,
  });
}

type ParsedRule =
  | { kind: 'exact'; id: string }
  | { kind: 'trust-domain'; trustDomain: string }
  | { kind: 'pattern'; rule: PatternRule };

function parseRule(rule: string, index: number): ParsedRule {
  if (typeof rule !== 'string' || rule.length === 0) throw ruleError(String(rule), 'cannot be empty');
  if (rule.length > MAX_SPIFFE_ID_LENGTH) throw ruleError(rule, `longer than ${MAX_SPIFFE_ID_LENGTH} bytes`);
  if (!rule.includes('*')) {
    let id: SpiffeId;
    try {
      id = parseSpiffeId(rule);
    } catch (err) {
      throw ruleError(rule, (err as Error).message, err);
    }
    return id.path === '' ? { kind: 'trust-domain', trustDomain: id.trustDomain } : { kind: 'exact', id: rule };
  }
  // Validate the wildcard form by substituting a literal for each wildcard segment, then parsing
  // the result as a SPIFFE ID: the same byte rules apply to the literal segments.
  const segments = rule.split('/');
  // segments: ['spiffe:', '', '<td>', ...path]
  const path = segments.slice(3);
  if (segments.length < 4 || segments[0] !== 'spiffe:' || segments[1] !== '') {
    throw ruleError(rule, 'a wildcard is only allowed as a whole path segment');
  }
  path.forEach((segment, i) => {
    if (segment.includes('*') && segment !== '*' && segment !== '**') {
      throw ruleError(rule, `partial wildcards such as ${quoteInput(segment)} are not supported`);
    }
    if (segment === '**' && i !== path.length - 1) throw ruleError(rule, '"**" is only allowed as the last segment');
  });
  const probe = [...segments.slice(0, 3), ...path.map((s) => (s.startsWith('*') ? 'x' : s))].join('/');
  let probeId: SpiffeId;
  try {
    probeId = parseSpiffeId(probe);
  } catch (err) {
    throw ruleError(rule, (err as Error).message.replace(quoteInput(probe), quoteInput(rule)), err);
  }
  if (path.length === 1 && path[0] === '**') return { kind: 'trust-domain', trustDomain: probeId.trustDomain };
  return { kind: 'pattern', rule: { text: rule, index, trustDomain: probeId.trustDomain, segments: path } };
}

function matchesPattern(rule: PatternRule, id: SpiffeId): boolean {
  if (id.trustDomain !== rule.trustDomain || id.path === '') return false;
  const segments = id.path.slice(1).split('/');
  const last = rule.segments.length - 1;
  const trailingAny = rule.segments[last] === '**';
  if (trailingAny ? segments.length < rule.segments.length : segments.length !== rule.segments.length) return false;
  for (let i = 0; i < rule.segments.length; i++) {
    const want = rule.segments[i];
    if (want === '**') return true;
    if (want !== '*' && want !== segments[i]) return false;
  }
  return true;
}

/** Validates and compiles allow rules once; matching is then two map lookups and the wildcard rules. */
export function compileAllowRules(rules: readonly string[]): IdMatcher {
  type Hit = { text: string; index: number };
  const exact = new Map<string, Hit>();
  const trustDomains = new Map<string, Hit>();
  const patterns: PatternRule[] = [];
  rules.forEach((text, index) => {
    const parsed = parseRule(text, index);
    // The first rule of a kind wins, so the reported rule is the first matching one in list order.
    if (parsed.kind === 'exact') {
      if (!exact.has(parsed.id)) exact.set(parsed.id, { text, index });
    } else if (parsed.kind === 'trust-domain') {
      if (!trustDomains.has(parsed.trustDomain)) trustDomains.set(parsed.trustDomain, { text, index });
    } else {
      patterns.push(parsed.rule);
    }
  });
  return (id) => {
    const a = exact.get(id.toString());
    const b = trustDomains.get(id.trustDomain);
    let best = a && b ? (a.index < b.index ? a : b) : (a ?? b);
    for (const rule of patterns) {
      if (best && rule.index > best.index) break;
      if (matchesPattern(rule, id)) {
        best = rule;
        break;
      }
    }
    return best?.text;
  };
}

/**
 * Public API: builds a predicate from allow rules (throws SidecarError on a bad rule). An empty list
 * denies everyone. A string argument that is not a valid SPIFFE ID is denied, never thrown.
 */
export function createAuthorizer(rules: string[]): (id: SpiffeId | string) => boolean {
  const match = compileAllowRules(rules);
  return (id) => {
    // Re-parse even a SpiffeId object: a hand-made object must not bypass the syntax rules.
    try {
      return match(parseSpiffeId(typeof id === 'string' ? id : id.toString())) !== undefined;
    } catch {
      return false;
    }
  };
}
