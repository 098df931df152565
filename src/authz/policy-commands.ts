// `spiffe-sidecar policy check`: what would the policy file decide for this caller and request? For
// operators and CI: prints the decision, the rule behind it and the segments a path template bound; exit
// status 0 allow, 3 deny. It also warns about deny rules that another spelling of the same path escapes (a
// warning never changes the exit status).
import { ISSUER_NAME_FORMAT, type PeerIdentity } from '../authn/identity.js';
import { SidecarError } from '../errors.js';
import { readFlagFile } from '../flag-file.js';
import { parseSpiffeId, type SpiffeId } from '../spiffe/id.js';
import { normalizeRequestPath } from '../path-match.js';
import type { Binding } from './path-template.js';
import { createFileAuthorizer } from './policy.js';
import { type CompiledPolicy, parsePolicy } from './policy-file.js';
import { type CompiledRule, type Decision, methodCovered, type RulePathPattern } from './rule-engine.js';

export const DENY_EXIT_STATUS = 3;

function invalid(message: string): never {
  throw new SidecarError('ERR_CONFIG_INVALID', `policy check: ${message}`);
}

/** `--id`: a workload's SPIFFE ID, which has a path (a trust domain alone is no caller). */
function callerId(text: string): SpiffeId {
  let id: SpiffeId;
  try {
    id = parseSpiffeId(text);
  } catch (err) {
    throw new SidecarError((err as SidecarError).code, `policy check: --id: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (id.path === '')
    invalid(`--id ${id}: a caller's SPIFFE ID has a path after the trust domain, e.g. ${id}/ns/prod/sa/web`);
  return id;
}

/** The caller the flags describe: an API key name, or a SPIFFE ID and/or an issuer with claims. */
function callerOf(options: Record<string, string | undefined>): PeerIdentity {
  const { id, issuer, claims: claimsText } = options;
  const apiKey = options['api-key'];
  if (apiKey !== undefined) {
    if (id !== undefined || issuer !== undefined || claimsText !== undefined)
      invalid('--api-key excludes --id, --issuer and --claims: an API key caller has only its name');
    return { method: 'api-key', name: apiKey };
  }
  let claims: Record<string, unknown> | undefined;
  if (claimsText !== undefined) {
    try {
      claims = JSON.parse(claimsText) as Record<string, unknown>;
    } catch (err) {
      invalid(`--claims is not JSON (${(err as Error).message}); write e.g. '{"sub":"ann","roles":["admin"]}'`);
    }
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims))
      invalid('--claims must be a JSON object, e.g. \'{"sub":"x","realm_access":{"roles":["admin"]}}\'');
  }
  // The caller's issuer is a --jwt-issuer name, never its URL: a check of another spelling would judge a caller the
  // running sidecar never sees.
  if (issuer !== undefined && !ISSUER_NAME_FORMAT.test(issuer))
    invalid(
      `--issuer ${JSON.stringify(issuer)}: give the --jwt-issuer NAME (lowercase letters, digits and -), e.g. keycloak`,
    );
  const spiffeId = id === undefined ? undefined : callerId(id);
  if (spiffeId && !issuer && !claims) return { method: 'mtls', id: spiffeId, leafSha256: '' };
  if (spiffeId)
    return { method: issuer ? 'k8s-sa' : 'jwt-svid', id: spiffeId, issuer, subject: spiffeId.toString(), claims };
  if (issuer === undefined)
    invalid('describe the caller: --id SPIFFE_ID, --issuer NAME with --claims JSON, or --api-key NAME');
  const subject = typeof claims?.sub === 'string' ? claims.sub : '';
  return { method: 'oidc', issuer, subject, claims };
}

// Deny rules match exact bytes, but many apps do not: Express ignores letter case and a trailing "/" by
// default, Spring MVC before 6 a trailing "/" (and before 5.3 an extension), Rails routes /admin.json to
// /admin. A deny rule of /admin then leaves /Admin, /admin/ or /admin.json to the rules after it. This
// lint looks at the policy alone: for each deny rule with a path, it takes the shortest path the rule
// matches and other spellings of it (a trailing "/" added or removed, ".json" appended, the letter case
// of the whole path or of one segment changed), and warns about a spelling that the rule does not match,
// that no deny rule before it refuses, and that the first later rule matching it allows. It errs toward
// warning: an allow rule counts whoever its callers are, a deny rule covers only if it refuses every
// caller and every method of the rule.

type Spelling = 'trailing-slash' | 'suffix' | 'case';

/** `*` stands for this segment in a glob's shortest path. */
const SAMPLE_SEGMENT = '1';

/**
 * The shortest path a pattern matches (a glob's `*` and a template's `{name}` as a sample segment; a trailing
 * `**` as nothing).
 */
function shortestPath(pattern: RulePathPattern): string {
  if ('exact' in pattern) return pattern.exact;
  if ('prefix' in pattern) return pattern.prefix;
  const segments = ('glob' in pattern ? pattern.glob : pattern.template).split('/').slice(1);
  if (segments.at(-1) === '**') segments.pop();
  return `/${segments.map((s) => (s === '*' || s.startsWith('{') ? SAMPLE_SEGMENT : s)).join('/')}`;
}

/** `admin` → `Admin`; a segment with an upper-case letter → lower case. Escapes (`%3A`) are kept. */
function otherCase(segment: string): string {
  const parts = segment.split(/(%[0-9A-F]{2})/);
  const text = (i: number) => i % 2 === 0;
  if (parts.some((p, i) => text(i) && /[A-Z]/.test(p)))
    return parts.map((p, i) => (text(i) ? p.toLowerCase() : p)).join('');
  let done = false;
  return parts
    .map((p, i) => {
      if (done || !text(i) || !/[a-z]/.test(p)) return p;
      done = true;
      return p.replace(/[a-z]/, (c) => c.toUpperCase());
    })
    .join('');
}

/** Other spellings an app may treat as `path`, in normal form, each kind in order of preference. */
function spellings(path: string): { kind: Spelling; path: string }[] {
  const out: { kind: Spelling; path: string }[] = [];
  if (path !== '/') out.push({ kind: 'trailing-slash', path: path.endsWith('/') ? path.slice(0, -1) : `${path}/` });
  if (!path.endsWith('/')) out.push({ kind: 'suffix', path: `${path}.json` });
  const segments = path.split('/');
  out.push({ kind: 'case', path: segments.map(otherCase).join('/') });
  for (let i = 1; i < segments.length; i++) {
    out.push({ kind: 'case', path: segments.map((s, j) => (j === i ? otherCase(s) : s)).join('/') });
  }
  return out.map((v) => ({ kind: v.kind, path: normalizeRequestPath(v.path) ?? path })).filter((v) => v.path !== path);
}

function methodsOverlap(a: CompiledRule['methods'], b: CompiledRule['methods']): boolean {
  if (a === undefined || b === undefined) return true;
  return [...a].some((m) => methodCovered(b, m)) || [...b].some((m) => methodCovered(a, m));
}

const matchesPath = (rule: CompiledRule, path: string) => rule.path === undefined || rule.path(path);

/** Whether `rule` refuses every caller and every method of `deny` (so a spelling it matches is covered). */
function coversDeny(rule: CompiledRule, deny: CompiledRule): boolean {
  if (rule.effect !== 'deny' || rule.callers !== undefined || rule.where !== undefined) return false;
  if (rule.methods === undefined) return true;
  return deny.methods !== undefined && [...deny.methods].every((m) => methodCovered(rule.methods, m));
}

/**
 * The allow rule that admits `path` where the deny rule at `index` does not, if any: callers are
 * ignored, except that only a deny of every caller (and all of the rule's methods) counts as covering.
 */
function escapeVia(rules: readonly CompiledRule[], index: number, path: string): CompiledRule | undefined {
  const deny = rules[index];
  if (matchesPath(deny, path)) return undefined;
  const applies = (r: CompiledRule) => methodsOverlap(deny.methods, r.methods) && matchesPath(r, path);
  if (rules.slice(0, index).some((r) => applies(r) && coversDeny(r, deny))) return undefined;
  const next = rules.slice(index + 1).find((r) => applies(r) && (r.effect === 'allow' || coversDeny(r, deny)));
  return next?.effect === 'allow' ? next : undefined;
}

function describePattern(pattern: RulePathPattern): string {
  const [kind, text] = Object.entries(pattern)[0] as [string, string];
  return `{ ${kind}: ${text} }`;
}

/** How to cover the trailing-"/" spelling with the rule's own pattern. */
function slashFix(pattern: RulePathPattern): string {
  if ('glob' in pattern) return `end the glob with "/**" (path: { glob: ${pattern.glob.replace(/\/$/, '')}/** })`;
  if ('template' in pattern) {
    return `end the template with "/**" (path: { template: ${pattern.template.replace(/\/$/, '')}/** })`;
  }
  const text = 'exact' in pattern ? pattern.exact : pattern.prefix;
  return `write path: { prefix: ${text.replace(/\/$/, '')} } (it also covers ${text.replace(/\/$/, '')}/ and every path below)`;
}

/**
 * One warning per deny rule that another spelling of its path escapes (see above): the spellings, the
 * allow rules that admit them, and the fix.
 */
export function policyWarnings(policy: CompiledPolicy): string[] {
  const warnings: string[] = [];
  policy.rules.forEach((rule, index) => {
    const pattern = rule.pathPattern;
    if (rule.effect !== 'deny' || pattern === undefined) return;
    const escapes = new Map<Spelling, { path: string; via: string }>();
    const shortest = shortestPath(pattern);
    for (const v of spellings(shortest)) {
      if (escapes.has(v.kind)) continue;
      const via = escapeVia(policy.rules, index, v.path);
      if (via) escapes.set(v.kind, { path: v.path, via: via.name });
    }
    if (escapes.size === 0) return;
    const found = [...escapes.values()];
    const vias = [...new Set(found.map((e) => `"${e.via}"`))];
    const allowedBy = vias.length === 1 ? `rule ${vias[0]} allows` : `rules ${vias.join(', ')} allow`;
    const fixes: string[] = [];
    if (escapes.has('trailing-slash')) fixes.push(slashFix(pattern));
    if (escapes.has('case') || escapes.has('suffix')) {
      fixes.push(
        'no pattern covers other letter cases or an added extension: narrow the allow rules to what is permitted (or add a deny rule for each spelling the app accepts)',
      );
    }
    fixes.push('keep deny rules before the allow rules they carve out of');
    warnings.push(
      `warning: deny rule "${rule.name}" (path: ${describePattern(pattern)}) does not match ` +
        `${found.map((e) => e.path).join(', ')}, which ${allowedBy}; rules match exact bytes, but an app that ` +
        `ignores a trailing "/", letter case or an extension serves these as ${shortest}. Fix: ${fixes.join('; ')}.`,
    );
  });
  return warnings;
}

/** `owner=alice`; a value with a space, a comma, a quote or an invisible character as a JSON string. */
function formatBindings(bindings: readonly Binding[]): string {
  const show = (b: Binding) => {
    if (b.value === undefined) return `${b.name}=<not UTF-8: ${b.segment}>`;
    return `${b.name}=${/^[^\s",\p{C}]+$/u.test(b.value) ? b.value : JSON.stringify(b.value)}`;
  };
  return bindings.map(show).join(', ');
}

/**
 * What the path's segments bound: under the rule that decided; or, for `resource_mismatch` (no rule decided),
 * under each allow rule with `where` whose method and template fit the request, for the operator to compare
 * with the caller's claims or SPIFFE ID.
 */
function bindingLines(policy: CompiledPolicy, decision: Decision, method: string, path: string): string[] {
  if (decision.rule !== undefined) {
    const bindings = policy.rules.find((r) => r.name === decision.rule)?.template?.bind(path);
    return bindings ? [`bindings: ${formatBindings(bindings)}`] : [];
  }
  if (decision.allow || decision.reason !== 'resource_mismatch') return [];
  return policy.rules.flatMap((r) => {
    const bindings = r.effect === 'allow' && r.where && methodCovered(r.methods, method) && r.template?.bind(path);
    return bindings ? [`bindings: ${formatBindings(bindings)} (rule ${r.name})`] : [];
  });
}

/**
 * Prints the decision for one request (exit 0 allow, 3 deny), then the policy's warnings. Without a
 * METHOD and PATH it only validates the file and prints `valid` and the warnings (exit 0).
 */
export async function policyCheck(
  options: Record<string, string | undefined>,
  method: string | undefined,
  target: string | undefined,
  out: NodeJS.WritableStream,
): Promise<number> {
  const file = options['policy-file'];
  if (!file) invalid('--policy-file is required');
  const lintOnly = method === undefined && target === undefined;
  if (lintOnly && ['id', 'issuer', 'claims', 'api-key'].some((k) => options[k] !== undefined))
    invalid('a caller needs a request: give METHOD PATH, e.g. GET /health');
  if (!lintOnly && (method === undefined || target === undefined)) invalid('expected METHOD PATH, e.g. GET /health');
  if (!lintOnly && (method as string).startsWith('/') && /^[A-Za-z]{1,20}$/.test(target as string))
    invalid(`expected METHOD PATH in that order: ${(target as string).toUpperCase()} ${method}`);
  if (!lintOnly && !/^[A-Z]{1,20}$/.test(method as string))
    invalid(
      /^[A-Za-z]{1,20}$/.test(method as string)
        ? `method ${JSON.stringify(method)}: write it in upper case, e.g. ${(method as string).toUpperCase()}`
        : `method ${JSON.stringify(method)}: an HTTP method is letters, e.g. GET or POST`,
    );
  if (!lintOnly && !(target as string).startsWith('/'))
    invalid(
      `path ${JSON.stringify(target)}: a request path starts with /, e.g. /${(target as string).replace(/^\/*/, '')}`,
    );
  const label = `--policy-file ${file}`;
  const policy = parsePolicy(await readFlagFile('--policy-file', file), label);
  if (lintOnly) {
    out.write(`${['valid', ...policyWarnings(policy)].join('\n')}\n`);
    return 0;
  }
  const caller = callerOf(options);
  // Local buckets: a decision here is at once (no store is configured for `policy check`).
  const decision = await createFileAuthorizer(() => policy).decide(caller, method as string, target as string);
  const lines = decision.allow
    ? [`allow`, `rule: ${decision.rule}`]
    : [`deny`, ...(decision.rule ? [`rule: ${decision.rule}`] : []), `reason: ${decision.reason}`];
  const path = normalizeRequestPath(target as string);
  if (path !== undefined) lines.push(...bindingLines(policy, decision, method as string, path));
  // Warnings after the decision: the first line stays `allow` or `deny` for scripts that read it.
  out.write(`${[...lines, ...policyWarnings(policy)].join('\n')}\n`);
  return decision.allow ? 0 : DENY_EXIT_STATUS;
}
