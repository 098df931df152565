// The policy file (`--policy-file`, YAML or JSON): parsed and validated as a whole into compiled rules.
// Every problem is an ERR_POLICY_INVALID naming the file and the place (`rules[2].path.glob`), and an
// unknown key is an error, never ignored: a typo must not silently widen who may call.
//
//   version: 1
//   claim_headers:                         # optional: claim path → request header for the app
//     realm_access.roles: x-roles           # an array claim is sent as a list (a, b, c)
//     '"kubernetes.io".namespace': x-k8s-namespace   # quote a claim name that has a dot
//   rules:
//     - name: managers-delete-sandboxes
//       effect: allow                      # or deny
//       methods: [DELETE]                  # optional: any method
//       path: { glob: /sandboxes/* }       # optional: exact, prefix, glob or template; any path
//       callers:                           # optional: any authenticated caller; all conditions must hold
//         ids: [spiffe://example.org/ns/prod/sa/*]   # --allow syntax; one must match
//         certificate:                                 # the connection's client certificate
//           ids: [spiffe://example.org/ns/prod/sa/gateway]   # --allow syntax; one must match
//         issuers: [keycloak]                          # token issuer names
//         api_keys: [partner-x]                        # API key names
//         auth: [mtls, jwt-svid, oidc, k8s-sa, api-key]  # how the caller authenticated (any of)
//         claims:                                      # every condition must hold
//           - { claim: realm_access.roles, contains: sandbox:manage }
//           - { claim: '"kubernetes.io".namespace', equals: prod }   # a quoted name may hold dots
//       rate_limit: { requests: 10, per: 1s, burst: 20 }   # allow rules only; per caller
//     - name: owners-use-their-sandboxes
//       effect: allow
//       path: { template: '/sandboxes/{owner}/**' }   # {name} binds one segment (path-template.ts)
//       where:                                         # every condition must hold (resource-condition.ts)
//         - { segment: owner, equals: claims.sub }     # or id.segment[N], id.trust_domain, key.name
//         - { segment: owner, in: [alice, bob] }       # fixed values; `segment: a/b` joins two bindings
import { type Document, parseDocument, visit } from 'yaml';
import { API_KEY_NAME_FORMAT, AUTH_METHODS, type AuthMethod, ISSUER_NAME_FORMAT } from '../authn/identity.js';
import { parseDuration } from '../duration.js';
import { SidecarError } from '../errors.js';
import { compileAllowRules, type IdMatcher } from '../spiffe/match.js';
import type { ClaimCondition, Scalar } from './claim-condition.js';
import { compileClaimHeaders, type ClaimHeaderMapping } from './claim-header-mapping.js';
import { parseClaimPath } from './claim-path.js';
import { compilePathPattern, type PathPattern } from '../path-match.js';
import { compilePathTemplate, type PathTemplate } from './path-template.js';
import { RateLimiter } from './rate-limiter.js';
import { CALLER_VALUE_HOW, parseCallerValue, type ResourceCondition } from './resource-condition.js';
import type { CallerConditions, CompiledRule, RulePathPattern } from './rule-engine.js';

/**
 * What the running sidecar knows that a rule's names must agree with. `issuers`: its `--jwt-issuer` names; a rule
 * naming another could never match, and a deny rule that never matches lets through whom it was written to stop.
 * Absent (`policy check`, which has no configuration): names are checked for their form only.
 */
export interface PolicyContext {
  readonly issuers?: readonly string[];
}

export interface CompiledPolicy {
  readonly rules: readonly CompiledRule[];
  /** `claim_headers:`: verified claims sent to the app as request headers, in the order written. */
  readonly claimHeaders?: readonly ClaimHeaderMapping[];
}

const RULE_NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/;
const METHOD = /^[A-Z]{1,20}$/;
/** The words of earlier versions: `jwt` named JWT-SVIDs and service-account tokens together. */
const AUTH_ALIASES: Readonly<Record<string, readonly AuthMethod[]>> = {
  jwt: ['jwt-svid', 'k8s-sa'],
  api_key: ['api-key'],
};
const MAX_RATE_REQUESTS = 1_000_000;

/** Refuses the document: `where` names the place in the message; `at` (default `where`) locates it in the file. */
type Bad = (where: string, why: string, at?: string) => never;

/** Refuses the document with a message that already names the place; `at` locates it in the file. */
type Refuse = (message: string, at: string) => never;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function onlyKeys(bad: Bad, where: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key))
      bad(where, `unknown key "${key}"; expected one of ${allowed.join(', ')}`, `${where}.${key}`);
  }
}

function stringList(bad: Bad, where: string, value: unknown, check?: (s: string) => string | undefined): string[] {
  if (!Array.isArray(value) || value.length === 0) bad(where, 'expected a non-empty list of strings');
  return (value as unknown[]).map((v, i) => {
    if (typeof v !== 'string' || v === '') bad(`${where}[${i}]`, 'expected a non-empty string');
    const why = check?.(v as string);
    if (why) bad(`${where}[${i}]`, why);
    return v as string;
  });
}

function isScalar(v: unknown): v is Scalar {
  return typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'boolean';
}

function compileClaims(bad: Bad, where: string, value: unknown): ClaimCondition[] {
  if (!Array.isArray(value) || value.length === 0) bad(where, 'expected a non-empty list of claim conditions');
  return (value as unknown[]).map((c, i) => {
    const at = `${where}[${i}]`;
    if (!isObject(c)) bad(at, 'expected { claim: NAME, equals|in|contains: VALUE }');
    const condition = c as Record<string, unknown>;
    onlyKeys(bad, at, condition, ['claim', 'equals', 'in', 'contains']);
    const claim = condition.claim;
    if (typeof claim !== 'string') {
      bad(`${at}.claim`, 'expected a claim name or a dotted path such as realm_access.roles');
    }
    const path = parseClaimPath(claim as string);
    if (typeof path === 'string') bad(`${at}.claim`, path);
    const ops = ['equals', 'in', 'contains'].filter((k) => k in condition);
    if (ops.length !== 1) bad(at, 'give exactly one of equals, in, contains');
    const op = ops[0] as 'equals' | 'in' | 'contains';
    const operand = condition[op];
    if (op === 'in') {
      if (!Array.isArray(operand) || operand.length === 0 || !operand.every(isScalar)) {
        bad(`${at}.in`, 'expected a non-empty list of strings, numbers or booleans');
      }
      return { claim: claim as string, path: path as readonly string[], in: operand as Scalar[] };
    }
    if (!isScalar(operand)) bad(`${at}.${op}`, 'expected a string, number or boolean');
    return op === 'equals'
      ? { claim: claim as string, path: path as readonly string[], equals: operand as Scalar }
      : { claim: claim as string, path: path as readonly string[], contains: operand as Scalar };
  });
}

/** A list of SPIFFE ID rules in --allow syntax, compiled. */
function compileIds(bad: Bad, where: string, value: unknown): IdMatcher {
  const ids = stringList(bad, where, value);
  try {
    return compileAllowRules(ids);
  } catch (err) {
    return bad(where, (err as Error).message);
  }
}

function compileCertificate(bad: Bad, where: string, value: unknown): IdMatcher {
  if (!isObject(value)) bad(where, 'expected { ids: [SPIFFE ID rules] }');
  const v = value as Record<string, unknown>;
  onlyKeys(bad, where, v, ['ids']);
  if (v.ids === undefined) bad(where, 'expected { ids: [SPIFFE ID rules] }');
  return compileIds(bad, `${where}.ids`, v.ids);
}

/** Why `name` in `callers.issuers` could never match a token caller, if it could not. */
function issuerNameProblem(name: string, known: readonly string[] | undefined): string | undefined {
  const lower = name.toLowerCase();
  const hint = lower !== name && (known === undefined || known.includes(lower)) ? ` (did you mean "${lower}"?)` : '';
  if (!ISSUER_NAME_FORMAT.test(name))
    return `"${name}" is not a --jwt-issuer name (lowercase letters, digits and -, e.g. keycloak, not its URL)${hint}: the rule could never match`;
  if (known === undefined || known.includes(name)) return undefined;
  return known.length === 0
    ? `no --jwt-issuer is configured, so a rule naming "${name}" could never match`
    : `no --jwt-issuer named "${name}" (configured: ${known.join(', ')}): the rule could never match`;
}

function apiKeyNameProblem(name: string): string | undefined {
  if (API_KEY_NAME_FORMAT.test(name)) return undefined;
  const bare = name.startsWith('api-key:') ? ` (write ${name.slice('api-key:'.length)}, without "api-key:")` : '';
  return `"${name}" is not an API key name, the NAME of its line in --api-keys-file (1-63 letters, digits, ".", "_" or "-")${bare}: the rule could never match`;
}

function compileCallers(bad: Bad, where: string, value: unknown, context: PolicyContext): CallerConditions {
  if (!isObject(value)) bad(where, 'expected a mapping with ids, certificate, issuers, api_keys, auth or claims');
  const v = value as Record<string, unknown>;
  onlyKeys(bad, where, v, ['ids', 'certificate', 'issuers', 'api_keys', 'auth', 'claims']);
  if (Object.keys(v).length === 0) bad(where, 'is empty; leave callers out to match any authenticated caller');
  const out: CallerConditions = {};
  if (v.ids !== undefined) out.ids = compileIds(bad, `${where}.ids`, v.ids);
  if (v.certificate !== undefined) out.certificate = compileCertificate(bad, `${where}.certificate`, v.certificate);
  if (v.issuers !== undefined) {
    const check = (name: string) => issuerNameProblem(name, context.issuers);
    out.issuers = new Set(stringList(bad, `${where}.issuers`, v.issuers, check));
  }
  if (v.api_keys !== undefined)
    out.apiKeys = new Set(stringList(bad, `${where}.api_keys`, v.api_keys, apiKeyNameProblem));
  if (v.auth !== undefined) {
    const check = (s: string) =>
      (AUTH_METHODS as readonly string[]).includes(s) || Object.hasOwn(AUTH_ALIASES, s)
        ? undefined
        : `expected one of ${AUTH_METHODS.join(', ')}`;
    const words = stringList(bad, `${where}.auth`, v.auth, check);
    out.auth = new Set(words.flatMap((w) => AUTH_ALIASES[w] ?? [w as AuthMethod]));
  }
  if (v.claims !== undefined) out.claims = compileClaims(bad, `${where}.claims`, v.claims);
  return out;
}

function compileRateLimit(bad: Bad, where: string, value: unknown): RateLimiter {
  if (!isObject(value)) bad(where, 'expected { requests: N, per: DURATION, burst: N }');
  const v = value as Record<string, unknown>;
  onlyKeys(bad, where, v, ['requests', 'per', 'burst']);
  const positive = (key: string, n: unknown) => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_RATE_REQUESTS) {
      bad(`${where}.${key}`, `expected a whole number from 1 to ${MAX_RATE_REQUESTS}`);
    }
    return n as number;
  };
  const requests = positive('requests', v.requests);
  if (typeof v.per !== 'string') bad(`${where}.per`, 'expected a duration such as 1s, 1m or 1h');
  let perMs = 0;
  try {
    perMs = parseDuration(v.per as string, `${where}.per`);
  } catch (err) {
    bad(`${where}.per`, (err as Error).message);
  }
  const burst = v.burst === undefined ? requests : positive('burst', v.burst);
  return new RateLimiter({ requests, perMs, burst });
}

function compilePath(bad: Bad, where: string, value: unknown): Pick<CompiledRule, 'path' | 'pathPattern' | 'template'> {
  if (!isObject(value) || Object.keys(value).length !== 1) {
    bad(where, 'expected exactly one of { exact: /p }, { prefix: /p }, { glob: /p/* }, { template: /p/{name} }');
  }
  const [kind, text] = Object.entries(value as Record<string, unknown>)[0];
  if (!['exact', 'prefix', 'glob', 'template'].includes(kind)) {
    bad(where, `unknown key "${kind}"; expected exact, prefix, glob or template`);
  }
  if (typeof text !== 'string') bad(`${where}.${kind}`, 'expected a path string');
  const pattern = { [kind]: text } as RulePathPattern;
  if ('template' in pattern) {
    const template = compilePathTemplate(pattern.template);
    if (typeof template === 'string') return bad(`${where}.template`, template);
    return { path: (path) => template.bind(path) !== undefined, pathPattern: pattern, template };
  }
  const matcher = compilePathPattern(pattern as PathPattern);
  if (typeof matcher === 'string') bad(`${where}.${kind}`, matcher);
  return { path: matcher as Exclude<typeof matcher, string>, pathPattern: pattern };
}

const WHERE_HOW = '{ segment: NAME, equals: claims.sub } or { segment: NAME, in: [a, b] }';

/** `segment: owner` or `segment: owner/repo`: the indexes of those bindings in the template. */
function compileSegment(bad: Bad, at: string, value: unknown, template: PathTemplate): number[] {
  if (typeof value !== 'string')
    bad(at, `expected the name of a segment the template binds (${template.names.join(', ')})`);
  const names = (value as string).split('/');
  return names.map((name, i) => {
    const index = template.names.indexOf(name);
    if (index === -1) {
      bad(at, `"${name}" is not bound by the template ${template.text}; it binds ${template.names.join(', ')}`);
    }
    if (names.indexOf(name) !== i) bad(at, `"${name}" is named twice; join each binding once`);
    return index;
  });
}

/**
 * A value compared in an allow rule's `where` must come from one namespace of names: a `sub` of one issuer
 * can equal another issuer's (bob at A, someone else at B), a SPIFFE ID path the same in two trust domains.
 * So `claims.*` needs `callers.issuers` with exactly one issuer, and `id.segment[N]` needs `callers.ids` whose
 * rules all name one trust domain (`idRules`: their text).
 */
function pinWhere(bad: Bad, where: string, rule: CompiledRule, idRules: readonly string[] | undefined): void {
  const refs = (rule.where ?? []).flatMap((c) => ('equals' in c && c.equals ? [c.equals] : []));
  if (refs.some((r) => r.kind === 'claim') && rule.callers?.issuers?.size !== 1)
    bad(
      where,
      'claims.* compares with a token of one issuer: add callers.issuers with exactly that issuer (the same sub can belong to someone else at another issuer)',
    );
  if (refs.some((r) => r.kind === 'id_segment')) {
    if (rule.callers?.ids === undefined || idRules === undefined)
      bad(
        where,
        'id.segment[N] compares with a SPIFFE ID: add callers.ids naming the trust domain (the same path can belong to another trust domain)',
      );
    // `spiffe://TD/…`: the rules are valid allow rules by now, so the trust domain is what precedes the path.
    const domains = [...new Set((idRules as readonly string[]).map((r) => r.slice('spiffe://'.length).split('/')[0]))];
    if (domains.length !== 1)
      bad(
        where,
        `id.segment[N] compares with a SPIFFE ID of one trust domain, but callers.ids names ${domains.join(', ')}: split the rule per trust domain (the same path can belong to a workload of each)`,
      );
  }
}

function compileWhere(
  bad: Bad,
  where: string,
  value: unknown,
  template: PathTemplate | undefined,
): ResourceCondition[] {
  if (!template) {
    bad(
      where,
      'needs a path template that binds the segments it names, e.g. path: { template: /sandboxes/{owner}/** }',
    );
  }
  const bound = template as PathTemplate;
  if (!Array.isArray(value) || value.length === 0)
    bad(where, `expected a non-empty list of conditions such as ${WHERE_HOW}`);
  return (value as unknown[]).map((c, i) => {
    const at = `${where}[${i}]`;
    if (!isObject(c)) bad(at, `expected ${WHERE_HOW}`);
    const condition = c as Record<string, unknown>;
    onlyKeys(bad, at, condition, ['segment', 'equals', 'in']);
    const bindings = compileSegment(bad, `${at}.segment`, condition.segment, bound);
    const segment = condition.segment as string;
    const ops = ['equals', 'in'].filter((k) => k in condition);
    if (ops.length !== 1) bad(at, 'give exactly one of equals, in');
    if (ops[0] === 'equals') {
      if (typeof condition.equals !== 'string') bad(`${at}.equals`, CALLER_VALUE_HOW);
      const ref = parseCallerValue(condition.equals as string);
      if (typeof ref === 'string') bad(`${at}.equals`, ref);
      return { segment, bindings, equals: ref as Exclude<typeof ref, string> };
    }
    // A fixed value that no path can bind would make a condition that silently never holds.
    const literal = (s: string) =>
      s.split('/').length === bindings.length && !s.split('/').includes('')
        ? undefined
        : bindings.length === 1
          ? 'a segment is never empty and never holds "/"'
          : `${segment} is ${bindings.length} non-empty segments joined by "/"`;
    const list = condition.in;
    if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string')) {
      bad(`${at}.in`, "expected a non-empty list of strings (quote a number: '42')");
    }
    return { segment, bindings, in: new Set(stringList(bad, `${at}.in`, list, literal)) };
  });
}

function compileRule(
  bad: Bad,
  where: string,
  value: unknown,
  names: Set<string>,
  context: PolicyContext,
): CompiledRule {
  if (!isObject(value)) bad(where, 'expected a mapping with name, effect, and optionally methods, path, callers');
  const v = value as Record<string, unknown>;
  onlyKeys(bad, where, v, ['name', 'description', 'effect', 'methods', 'path', 'callers', 'where', 'rate_limit']);
  if (typeof v.name !== 'string' || !RULE_NAME.test(v.name)) {
    bad(`${where}.name`, 'expected 1-63 letters, digits, ".", "_", ":" or "-", starting with a letter or digit');
  }
  const name = v.name as string;
  if (names.has(name)) bad(`${where}.name`, `"${name}" is used by an earlier rule; names must be unique`);
  names.add(name);
  if (v.description !== undefined && typeof v.description !== 'string') bad(`${where}.description`, 'expected text');
  if (v.effect !== 'allow' && v.effect !== 'deny') bad(`${where}.effect`, 'expected allow or deny');
  const rule: CompiledRule = { name, effect: v.effect as 'allow' | 'deny' };
  if (v.methods !== undefined) {
    const methods = stringList(bad, `${where}.methods`, v.methods, (m) =>
      METHOD.test(m) ? undefined : 'expected an upper-case HTTP method such as GET or POST',
    );
    rule.methods = new Set(methods);
  }
  if (v.path !== undefined) Object.assign(rule, compilePath(bad, `${where}.path`, v.path));
  if (v.callers !== undefined) rule.callers = compileCallers(bad, `${where}.callers`, v.callers, context);
  if (v.where !== undefined) rule.where = compileWhere(bad, `${where}.where`, v.where, rule.template);
  if (rule.where && rule.effect === 'allow') {
    const ids = (v.callers as { ids?: unknown } | undefined)?.ids;
    pinWhere(bad, `${where}.where`, rule, Array.isArray(ids) ? (ids as string[]) : undefined);
  }
  if (v.rate_limit !== undefined) {
    if (rule.effect !== 'allow') bad(`${where}.rate_limit`, 'only an allow rule can be rate limited');
    rule.limiter = compileRateLimit(bad, `${where}.rate_limit`, v.rate_limit);
  }
  return rule;
}

/**
 * `claim_headers:`. A bad entry is located at the mapping, not the entry: its key may hold dots, which a
 * place such as `claim_headers.a.b` cannot tell apart from nesting; the message names the entry.
 */
function compileClaimHeaderMap(bad: Bad, refuse: Refuse, value: unknown): readonly ClaimHeaderMapping[] {
  const where = 'claim_headers';
  if (!isObject(value)) {
    bad(where, 'expected a mapping from claim path to header name, such as realm_access.roles: x-roles');
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) bad(where, 'is empty; leave claim_headers out to send no claim headers');
  const compiled = compileClaimHeaders(entries, where);
  return typeof compiled === 'string' ? refuse(compiled, where) : compiled;
}

/** Line and column (1-based) of a character offset in `text`. */
function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

/** `rules[2].path.glob` → `['rules', 2, 'path', 'glob']`; `top level` → `[]`. */
function keyPath(where: string): (string | number)[] {
  return [...where.replace(/^top level\.?/, '').matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) =>
    m[2] === undefined ? m[1] : Number(m[2]),
  );
}

/** Where in the file `where` is: the node at that path, or the nearest enclosing one that exists. */
function placeOf(doc: Document, text: string, where: string): string {
  const path = keyPath(where);
  for (let n = path.length; n > 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return ` (${lineColumn(text, node.range[0])})`;
  }
  return '';
}

/** Parses and compiles a policy document (YAML or JSON text). */
export function parsePolicy(text: string, label: string, context: PolicyContext = {}): CompiledPolicy {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  const refuse: Refuse = (message, at) => {
    throw new SidecarError('ERR_POLICY_INVALID', `${label}: ${message}${placeOf(doc, text, at)}`);
  };
  const bad: Bad = (where, why, at = where) => refuse(`${where}: ${why}`, at);
  const notYaml = (why: string, err: unknown): never => {
    throw new SidecarError('ERR_POLICY_INVALID', `${label}: not valid YAML or JSON (${why})`, { cause: err });
  };
  const [first] = doc.errors;
  if (first) notYaml(`${lineColumn(text, first.pos[0])}: ${first.message.split('\n')[0]}`, first);
  let document: unknown;
  try {
    document = doc.toJS({ maxAliasCount: 0 });
  } catch (err) {
    // Aliases are refused (maxAliasCount 0: no billion laughs); say where the first one is.
    let at = '';
    visit(doc, {
      Alias(_, node) {
        at = node.range ? `${lineColumn(text, node.range[0])}: ` : '';
        return visit.BREAK;
      },
    });
    notYaml(`${at}${(err as Error).message.split('\n')[0]}`, err);
  }
  if (!isObject(document)) bad('top level', 'expected a mapping with version: 1 and rules');
  const root = document as Record<string, unknown>;
  onlyKeys(bad, 'top level', root, ['version', 'claim_headers', 'rules']);
  if (root.version !== 1) bad('version', 'expected 1');
  if (!Array.isArray(root.rules) || root.rules.length === 0) {
    bad('rules', 'expected a non-empty list of rules (with no rules every request is denied: say so with a deny rule)');
  }
  const names = new Set<string>();
  const rules = (root.rules as unknown[]).map((r, i) => compileRule(bad, `rules[${i}]`, r, names, context));
  if (root.claim_headers === undefined) return { rules };
  return { rules, claimHeaders: compileClaimHeaderMap(bad, refuse, root.claim_headers) };
}
