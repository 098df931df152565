// The request path as the policy sees it (one normal form, or refused), and the three ways a rule names
// paths: exact, prefix on a segment boundary, and glob (`*` one segment, trailing `**` any number).
import { describe, expect, it } from 'vitest';
import { compilePathPattern, normalizeRequestPath, type PathPattern } from '../src/path-match.js';

describe('a request target has one normal form, or is refused', () => {
  const cases: [target: string, normal: string | undefined][] = [
    // accepted as they are
    ['/', '/'],
    ['/a', '/a'],
    ['/a/b/c', '/a/b/c'],
    ['/a/', '/a/'],
    ['/a.b', '/a.b'],
    ['/...', '/...'],
    ['/.well-known/x', '/.well-known/x'],
    ['/sandboxes/*', '/sandboxes/*'],
    // the query string is not part of the path, whatever it holds
    ['/a?x=1', '/a'],
    ['/a?x=/../admin', '/a'],
    ['/a?', '/a'],
    ['/a?%2F', '/a'],
    // unreserved characters decoded (RFC 3986 §2.3), other escapes upper-cased
    ['/%7E', '/~'],
    ['/%7euser', '/~user'],
    ['/%41dmin', '/Admin'],
    ['/%61dmin', '/admin'],
    ['/a%2Db%5Fc%2E', '/a-b_c.'],
    ['/a%2eb', '/a.b'],
    ['/a%3a', '/a%3A'],
    ['/a%3A', '/a%3A'],
    ['/caf%c3%a9', '/caf%C3%A9'],
    ['/a%20b', '/a%20b'],
    ['/a%3Fb', '/a%3Fb'],
    // a double-encoded escape is decoded once, never twice
    ['/%252e%252e/admin', '/%252e%252e/admin'],
    ['/%25', '/%25'],
    // path parameters: Tomcat and Spring strip them before routing
    ['/a;b=c', undefined],
    ['/admin;x', undefined],
    ['/admin%3bx', undefined],
    // dot segments, plain or encoded
    ['/a/./b', undefined],
    ['/a/../b', undefined],
    ['/v1/../admin', undefined],
    ['/.', undefined],
    ['/..', undefined],
    ['/a/..', undefined],
    ['/a/%2e%2e/b', undefined],
    ['/a/%2E%2E/b', undefined],
    ['/a/.%2e/b', undefined],
    ['/a/%2e/b', undefined],
    // empty segments (only a trailing slash is allowed)
    ['//', undefined],
    ['//a', undefined],
    ['/a//b', undefined],
    ['/a//', undefined],
    // encoded slash, backslash and NUL, any case
    ['/a%2Fb', undefined],
    ['/a%2fb', undefined],
    ['/a%5Cb', undefined],
    ['/a%5cb', undefined],
    ['/a%00', undefined],
    // encoded control characters: `/admin%0A` is `/admin` to an app that trims, or to Python's `$`
    ['/admin%0A', undefined],
    ['/admin%0a', undefined],
    ['/admin%09', undefined],
    ['/admin%0D', undefined],
    ['/admin%1f', undefined],
    ['/admin%7F', undefined],
    // the escapes around them are still paths: a space and `!` stay escaped, `~` is decoded
    ['/a%20b', '/a%20b'],
    ['/a%21', '/a%21'],
    ['/a%7e', '/a~'],
    // backslash, fragment, bad escapes
    ['/a\\b', undefined],
    ['\\a', undefined],
    ['/a#b', undefined],
    ['/a%', undefined],
    ['/a%4', undefined],
    ['/a%zz', undefined],
    ['/a%%41', undefined],
    // not origin-form
    ['', undefined],
    ['*', undefined],
    ['a/b', undefined],
    ['http://example.org/admin', undefined],
    ['?x=1', undefined],
    // only visible ASCII: an HTTP/2 :path may carry raw bytes, read as latin1 here and as UTF-8 by the app
    ['/sandboxes/jos\u00c3\u00a9/f', undefined],
    ['/a b', undefined],
    ['/a\u007f', undefined],
    ['/sandboxes/jos%C3%A9/f', '/sandboxes/jos%C3%A9/f'],
  ];
  it.each(cases)('%j → %j', (target, normal) => {
    expect(normalizeRequestPath(target)).toBe(normal);
  });
});

function matcher(pattern: PathPattern) {
  const m = compilePathPattern(pattern);
  if (typeof m === 'string') throw new Error(m);
  return m;
}

describe('path patterns', () => {
  const cases: [pattern: PathPattern, path: string, matches: boolean][] = [
    // exact
    [{ exact: '/healthz' }, '/healthz', true],
    [{ exact: '/healthz' }, '/healthz/', false],
    [{ exact: '/healthz' }, '/healthz/x', false],
    [{ exact: '/healthz' }, '/healthzx', false],
    [{ exact: '/healthz' }, '/Healthz', false],
    [{ exact: '/' }, '/', true],
    [{ exact: '/' }, '/a', false],
    [{ exact: '/a%3A' }, '/a%3A', true],
    // prefix: on a segment boundary only
    [{ prefix: '/api' }, '/api', true],
    [{ prefix: '/api' }, '/api/', true],
    [{ prefix: '/api' }, '/api/v1/x', true],
    [{ prefix: '/api' }, '/apix', false],
    [{ prefix: '/api' }, '/api-internal/x', false],
    [{ prefix: '/api' }, '/ap', false],
    [{ prefix: '/api' }, '/', false],
    [{ prefix: '/api/v1' }, '/api/v1/a', true],
    [{ prefix: '/api/v1' }, '/api/v10', false],
    [{ prefix: '/' }, '/', true],
    [{ prefix: '/' }, '/anything/at/all', true],
    // glob: `*` is exactly one non-empty segment
    [{ glob: '/sandboxes/*' }, '/sandboxes/s1', true],
    [{ glob: '/sandboxes/*' }, '/sandboxes/', false],
    [{ glob: '/sandboxes/*' }, '/sandboxes', false],
    [{ glob: '/sandboxes/*' }, '/sandboxes/s1/files', false],
    [{ glob: '/sandboxes/*' }, '/sandboxesx/s1', false],
    [{ glob: '/a/*/c' }, '/a/b/c', true],
    [{ glob: '/a/*/c' }, '/a/b/b/c', false],
    [{ glob: '/a/*/c' }, '/a/c', false],
    [{ glob: '/*' }, '/x', true],
    [{ glob: '/*' }, '/', false],
    [{ glob: '/*' }, '/x/y', false],
    // glob: a trailing `**` is any number of segments, zero included
    [{ glob: '/api/**' }, '/api', true],
    [{ glob: '/api/**' }, '/api/', true],
    [{ glob: '/api/**' }, '/api/a', true],
    [{ glob: '/api/**' }, '/api/a/b/c', true],
    [{ glob: '/api/**' }, '/apix', false],
    [{ glob: '/api/**' }, '/apix/a', false],
    [{ glob: '/api/**' }, '/', false],
    [{ glob: '/**' }, '/', true],
    [{ glob: '/**' }, '/a/b', true],
    [{ glob: '/a/*/**' }, '/a/b', true],
    [{ glob: '/a/*/**' }, '/a/b/c/d', true],
    [{ glob: '/a/*/**' }, '/a', false],
    // literal segments in a glob are exact
    [{ glob: '/a/b' }, '/a/b', true],
    [{ glob: '/a/b' }, '/a/b/', false],
  ];
  it.each(cases)('%j on %s → %s', (pattern, path, expected) => {
    expect(matcher(pattern)(path)).toBe(expected);
  });

  const invalid: [pattern: PathPattern, message: RegExp][] = [
    [{ exact: '' }, /not a path in normal form/],
    [{ exact: 'healthz' }, /not a path in normal form/],
    [{ exact: '/a/../b' }, /not a path in normal form/],
    [{ exact: '/a/./b' }, /not a path in normal form/],
    [{ exact: '/a//b' }, /not a path in normal form/],
    [{ exact: '/a?x=1' }, /not a path in normal form/],
    [{ exact: '/a#x' }, /not a path in normal form/],
    [{ exact: '/a\\b' }, /not a path in normal form/],
    [{ exact: '/a%2Fb' }, /not a path in normal form/],
    // an escape that has a shorter normal form would never match a request: refused
    [{ exact: '/%7Euser' }, /not a path in normal form/],
    [{ exact: '/a%3a' }, /not a path in normal form/],
    [{ exact: '/a*' }, /use glob for wildcards/],
    [{ prefix: '/api/' }, /ends with "\/": write "\/api"/],
    [{ prefix: '/api*' }, /use glob for wildcards/],
    [{ glob: '/a*' }, /must be whole segments/],
    [{ glob: '/a/b*c' }, /must be whole segments/],
    [{ glob: '/***' }, /must be whole segments/],
    [{ glob: '/**/a' }, /only allowed as the last segment/],
    [{ glob: '/a/**/' }, /only allowed as the last segment/],
  ];
  it.each(invalid)('%j is refused with a message naming the fix', (pattern, message) => {
    const result = compilePathPattern(pattern);
    expect(typeof result).toBe('string');
    expect(result).toMatch(message);
  });
});
