// Request paths as the policy sees them, and the three ways a rule names paths: exact, prefix on a
// segment boundary, and glob (`*` one segment, a trailing `**` any number of segments). A path template
// (authz/path-template.ts) is a glob whose named segments bind values.
//
// A path check is only as good as the agreement between the proxy and the app on what the path is. An
// app that decodes `%2F`, resolves `..` or merges `//` would route `/public/../admin` to a place the
// rule never saw. So the policy matches a normal form (RFC 3986 §6.2.2: unreserved characters decoded,
// other escapes upper-cased) and refuses what has no unambiguous one: dot segments, empty segments,
// encoded `/` `\` and control characters, backslashes, `;` (path parameters), and anything not starting with `/`.
// A control character (`/admin%0A`) is a path no rule names, which an app that trims what it decodes, or matches
// with a `$` that also matches before a final newline (Python's re), routes to `/admin`.

/** Percent-encoded bytes of unreserved characters (RFC 3986 §2.3) are decoded; these must stay escaped. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const FORBIDDEN_ESCAPES = new Set(['2F', '5C', '3B']);

/** Visible ASCII only (RFC 3986 §2: a path is ASCII; anything else is percent-encoded). */
const VISIBLE_ASCII = /^[\x21-\x7e]*$/;

/** The normal form of a request target's path, or undefined if it has none (the request is refused). */
export function normalizeRequestPath(target: string): string | undefined {
  const q = target.indexOf('?');
  const raw = q === -1 ? target : target.slice(0, q);
  // `;` starts path parameters that Tomcat, Spring and others strip before routing (`/admin;x` is
  // `/admin` to them): refused rather than matched as a different path.
  if (!raw.startsWith('/') || raw.includes('\\') || raw.includes('#') || raw.includes(';')) return undefined;
  // Only visible ASCII: HTTP/1.1 refuses anything else, but an HTTP/2 :path may carry raw bytes above 0x7F,
  // which a rule would read as latin1 and the app as UTF-8 (`jos\xC3\xA9` is `josé` to the app).
  if (!VISIBLE_ASCII.test(raw)) return undefined;
  let path = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c !== '%') {
      path += c;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3).toUpperCase();
    if (!/^[0-9A-F]{2}$/.test(hex) || FORBIDDEN_ESCAPES.has(hex)) return undefined;
    const code = Number.parseInt(hex, 16);
    if (code < 0x20 || code === 0x7f) return undefined;
    const decoded = String.fromCharCode(code);
    path += UNRESERVED.test(decoded) ? decoded : `%${hex}`;
    i += 2;
  }
  const segments = path.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    if (s === '.' || s === '..') return undefined;
    // An empty segment is allowed only as the trailing slash (`/api/`).
    if (s === '' && i !== segments.length - 1) return undefined;
  }
  return path;
}

export type PathPattern = { exact: string } | { prefix: string } | { glob: string };

export type PathMatcher = (path: string) => boolean;

/** Why a pattern's text is not a path in normal form (no pattern can match what no request path is), if it is not. */
export function normalFormProblem(text: string): string | undefined {
  if (normalizeRequestPath(text) === text) return undefined;
  return `"${text}" is not a path in normal form: start with "/", no "." or ".." or empty segments, no "?", "#" or "\\", escapes only for reserved characters`;
}

/** Compiles a pattern; returns an error message (naming the fix) instead of a matcher when it is invalid. */
export function compilePathPattern(pattern: PathPattern): PathMatcher | string {
  const [kind, text] = Object.entries(pattern)[0] as ['exact' | 'prefix' | 'glob', string];
  const problem = normalFormProblem(text);
  if (problem) return problem;
  if (kind === 'exact') {
    if (text.includes('*')) return `exact path "${text}" contains "*": use glob for wildcards`;
    return (path) => path === text;
  }
  if (kind === 'prefix') {
    if (text.includes('*')) return `prefix "${text}" contains "*": use glob for wildcards`;
    if (text === '/') return () => true;
    if (text.endsWith('/'))
      return `prefix "${text}" ends with "/": write "${text.slice(0, -1)}" (it matches on segment boundaries)`;
    return (path) => path === text || path.startsWith(`${text}/`);
  }
  const segments = text.split('/').slice(1);
  for (const [i, s] of segments.entries()) {
    if (s.includes('*') && s !== '*' && s !== '**')
      return `glob "${text}": "*" and "**" must be whole segments, e.g. /sandboxes/* or /api/**`;
    if (s === '**' && i !== segments.length - 1) return `glob "${text}": "**" is only allowed as the last segment`;
  }
  return (path) => globMatch(segments, path.split('/').slice(1));
}

/** `*` matches exactly one non-empty segment; a trailing `**` matches zero or more segments. */
function globMatch(pattern: readonly string[], segments: readonly string[]): boolean {
  const last = pattern.length - 1;
  if (pattern[last] === '**') {
    if (segments.length < last) return false;
    return pattern.slice(0, last).every((p, i) => segmentMatch(p, segments[i]));
  }
  return segments.length === pattern.length && pattern.every((p, i) => segmentMatch(p, segments[i]));
}

function segmentMatch(pattern: string, segment: string): boolean {
  return pattern === '*' ? segment !== '' : pattern === segment;
}
