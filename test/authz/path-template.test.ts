// Path templates: `{name}` binds one whole, non-empty segment of the path in normal form, decoded once; every
// malformed template is refused with a message that says how to write it; and, checked against a reference
// built another way (a regular expression), a template matches what its glob matches and never binds a "/".
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compilePathTemplate, type PathTemplate } from '../../src/authz/path-template.js';
import { compilePathPattern, normalizeRequestPath } from '../../src/path-match.js';

function compiled(text: string): PathTemplate {
  const t = compilePathTemplate(text);
  if (typeof t === 'string') throw new Error(t);
  return t;
}

/** The bindings as `{ name: value }` (normal form of the target first), or undefined when it does not match. */
function bind(template: string, target: string): Record<string, string | undefined> | undefined {
  const path = normalizeRequestPath(target);
  if (path === undefined) throw new Error(`${target} has no normal form`);
  const bindings = compiled(template).bind(path);
  return bindings && Object.fromEntries(bindings.map((b) => [b.name, b.value]));
}

describe('compilePathTemplate refuses, saying how to write it', () => {
  const cases: [text: string, message: string][] = [
    ['/sandboxes/*', 'binds no segment: write it as { glob: /sandboxes/* }'],
    ['/sandboxes', 'binds no segment'],
    ['/sandboxes/{Owner}', '"{Owner}": a name is a lower-case letter'],
    ['/sandboxes/{1st}', '"{1st}": a name is a lower-case letter'],
    ['/sandboxes/{}', '"{}": a name is a lower-case letter'],
    ['/sandboxes/{own-er}', '"{own-er}"'],
    ['/sandboxes/{_x}', '"{_x}"'],
    ['/a/{x}/b/{x}', '"{x}" is bound twice'],
    ['/sandboxes/x{owner}', '"{" and "}" enclose a name that is a whole segment'],
    ['/sandboxes/{owner}.json', '"{" and "}" enclose a name that is a whole segment'],
    ['/sandboxes/{a}{b}', '"{" and "}" enclose'],
    ['/sandboxes/{owner', '"{" and "}" enclose'],
    ['/sandboxes/owner}', '"{" and "}" enclose'],
    ['/sandboxes/{{owner}}', '"{" and "}" enclose'],
    ['/sandboxes/{owner}/x*', '"*" and "**" must be whole segments'],
    ['/sandboxes/**/{owner}', '"**" is only allowed as the last segment'],
    ['sandboxes/{owner}', 'is not a path in normal form'],
    ['/sandboxes/../{owner}', 'is not a path in normal form'],
    ['/sandboxes//{owner}', 'is not a path in normal form'],
    ['/%73andboxes/{owner}', 'is not a path in normal form'],
    ['/sandboxes/{owner}?x', 'is not a path in normal form'],
    ['/sandboxes/{owner};v=1', 'is not a path in normal form'],
  ];
  it.each(cases)('%s', (text, message) => {
    const result = compilePathTemplate(text);
    expect(typeof result).toBe('string');
    expect(result).toContain(message);
  });

  it('accepts names of lower-case letters, digits and "_", literal segments, "*" and a trailing "**"', () => {
    for (const text of ['/{a}', '/s/{owner}/**', '/n/{ns_1}/*/{sa}', '/{a}/{b}/{c}/', '/x/%7Bnot%7D/{y}']) {
      expect(typeof compilePathTemplate(text), text).toBe('object');
    }
    expect(compiled('/n/{ns}/*/{sa}/**').names).toEqual(['ns', 'sa']);
  });
});

describe('a template binds whole segments of the normal form', () => {
  const cases: [template: string, target: string, bindings: Record<string, string | undefined> | undefined][] = [
    ['/sandboxes/{owner}/**', '/sandboxes/alice', { owner: 'alice' }],
    ['/sandboxes/{owner}/**', '/sandboxes/alice/', { owner: 'alice' }],
    ['/sandboxes/{owner}/**', '/sandboxes/alice/x/y', { owner: 'alice' }],
    ['/sandboxes/{owner}/**', '/sandboxes', undefined],
    ['/sandboxes/{owner}/**', '/sandboxes/', undefined],
    ['/sandboxes/{owner}/**', '/Sandboxes/alice', undefined],
    ['/sandboxes/{owner}/**', '/sandboxesx/alice', undefined],
    ['/sandboxes/{owner}', '/sandboxes/alice', { owner: 'alice' }],
    ['/sandboxes/{owner}', '/sandboxes/alice/', undefined],
    ['/sandboxes/{owner}', '/sandboxes/alice/x', undefined],
    ['/sandboxes/{owner}/', '/sandboxes/alice/', { owner: 'alice' }],
    ['/n/{ns}/*/{sa}', '/n/prod/sa/web', { ns: 'prod', sa: 'web' }],
    ['/n/{ns}/*/{sa}', '/n/prod/sa', undefined],
    // decoded once, as the app's router would: both spellings bind the same value
    ['/u/{user}', '/u/alice%40example.com', { user: 'alice@example.com' }],
    ['/u/{user}', '/u/alice@example.com', { user: 'alice@example.com' }],
    ['/u/{user}', '/u/%61lice', { user: 'alice' }],
    ['/u/{user}', '/u/caf%c3%a9', { user: 'café' }],
    ['/u/{user}', '/u/a%20b', { user: 'a b' }],
    ['/u/{user}', '/u/a+b', { user: 'a+b' }],
    ['/u/{user}', '/u/%3F', { user: '?' }],
    // once, never twice: %2541 is "%41", not "A"
    ['/u/{user}', '/u/%2541', { user: '%41' }],
    ['/u/{user}', '/u/%252F', { user: '%2F' }],
    // bytes that are not UTF-8 bind no value (a condition on them never holds); the path still matches
    ['/u/{user}', '/u/%FF', { user: undefined }],
    ['/u/{user}', '/u/%C3', { user: undefined }],
    ['/u/{user}', '/u/%C0%AF', { user: undefined }],
    ['/u/{user}', '/u/%ED%A0%80', { user: undefined }],
    // dots inside a segment are text; a dot segment has no normal form at all (below)
    ['/u/{user}', '/u/...', { user: '...' }],
    ['/u/{user}', '/u/a.b', { user: 'a.b' }],
  ];
  it.each(cases)('%s on %s', (template, target, bindings) => {
    expect(bind(template, target)).toEqual(bindings);
  });

  it('an encoded "/" never splits or joins a binding: such a path has no normal form and is refused before any rule', () => {
    for (const target of ['/u/alice%2Fbob', '/u/alice%2fbob', '/u/%2F', '/u/a%5Cb', '/u/a%00', '/u/..', '/u/%2e%2e']) {
      expect(normalizeRequestPath(target), target).toBeUndefined();
    }
    // An overlong encoding of "/" is no "/" either: not UTF-8, so no value.
    expect(bind('/u/{user}/**', '/u/a%C0%AFb/c')).toEqual({ user: undefined });
  });

  it('keeps the segment as it is in the normal form next to the value', () => {
    expect(compiled('/u/{user}').bind('/u/a%20b')).toEqual([{ name: 'user', segment: 'a%20b', value: 'a b' }]);
  });
});

/** The reference: a regular expression built from the template, each `{name}` a capture group. */
function referenceBind(template: string, path: string): Record<string, string | undefined> | undefined {
  const segments = template.split('/').slice(1);
  const names: string[] = [];
  let source = '';
  for (const s of segments) {
    if (s === '**') source += '(?:/.*)?';
    else if (s === '*') source += '/[^/]+';
    else if (/^\{.+\}$/.test(s)) {
      names.push(s.slice(1, -1));
      source += '/([^/]+)';
    } else source += `/${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
  }
  const m = new RegExp(`^${source}$`).exec(path);
  if (!m) return undefined;
  return Object.fromEntries(
    names.map((n, i) => {
      try {
        return [n, decodeURIComponent(m[i + 1])];
      } catch {
        return [n, undefined];
      }
    }),
  );
}

describe('properties', () => {
  const PIECES = [
    'a',
    'b',
    'alice',
    '%2F',
    '%2f',
    '%25',
    '%41',
    '%C3%A9',
    '%FF',
    '%C0%AF',
    '.',
    '..',
    '',
    '~',
    '@',
    '%20',
  ];
  const segment = fc.array(fc.constantFrom(...PIECES), { minLength: 0, maxLength: 3 }).map((p) => p.join(''));
  const target = fc
    .tuple(fc.array(segment, { minLength: 0, maxLength: 6 }), fc.boolean())
    .map(([segs, slash]) => `/${segs.join('/')}${slash ? '/' : ''}`);
  const templateSegment = fc.constantFrom('a', 'b', 'alice', '*', '{x}', '{y}', '{z}', '%C3%A9', '~');
  const template = fc
    .tuple(fc.array(templateSegment, { minLength: 1, maxLength: 5 }), fc.boolean())
    .map(([segs, tail]) => {
      // Each name once: the second `{x}` becomes `*`.
      const seen = new Set<string>();
      const unique = segs.map((s) => (s.startsWith('{') && seen.has(s) ? '*' : (seen.add(s), s)));
      return `/${unique.join('/')}${tail ? '/**' : ''}`;
    })
    .filter((t) => t.includes('{'));

  it('matching agrees with the reference and with the glob the template reads as; no binding holds "/"', () => {
    let matched = 0;
    fc.assert(
      fc.property(template, target, (text, raw) => {
        const path = normalizeRequestPath(raw);
        fc.pre(path !== undefined);
        const compiledTemplate = compiled(text);
        const bindings = compiledTemplate.bind(path as string);
        const asObject = bindings && Object.fromEntries(bindings.map((b) => [b.name, b.value]));
        expect(asObject).toEqual(referenceBind(text, path as string));
        const glob = compilePathPattern({ glob: text.replace(/\{[a-z]\}/g, '*') });
        if (typeof glob === 'string') throw new Error(glob);
        expect(bindings !== undefined).toBe(glob(path as string));
        if (bindings) matched++;
        for (const b of bindings ?? []) {
          expect(b.segment).not.toContain('/');
          expect(b.segment).not.toBe('');
          expect(b.value ?? '').not.toContain('/');
        }
      }),
      { numRuns: 5000 },
    );
    // Not vacuous: many runs match and bind.
    expect(matched).toBeGreaterThan(100);
  });

  it('whatever the request target, a binding never holds "/" or "\\"', () => {
    const compiledTemplate = compiled('/{a}/{b}/**');
    fc.assert(
      fc.property(
        // Visible ASCII: anything else has no normal form (refused before any binding).
        fc.string({ unit: 'grapheme-ascii', maxLength: 60 }),
        fc.string({ unit: 'grapheme-ascii', maxLength: 20 }),
        (s, t) => {
          const path = normalizeRequestPath(`/${s}/${t}`);
          fc.pre(path !== undefined);
          for (const b of compiledTemplate.bind(path as string) ?? []) {
            expect(b.value ?? '').not.toMatch(/[/\\]/);
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});
