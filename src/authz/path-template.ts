// Path templates (`/sandboxes/{owner}/**`): a glob whose `{name}` segments bind the request's segment there,
// for a rule's `where` conditions. Compiling returns a message naming the fix instead of throwing; binding never fails.
//
// A template matches exactly the paths of its glob (each `{name}` read as `*`), in normal form (path-match.ts).
// A bound value is that one segment percent-decoded once, as UTF-8: what an app that decodes its path sees,
// so `alice%40example.com` and `alice@example.com` both bind `alice@example.com`. It can never hold `/`: the
// normal form refuses `%2F`, and a segment is what lies between two `/`. A segment that is not UTF-8 once
// decoded (`%FF`, an overlong `%C0%AF`) binds no value, and a condition on it never holds.
import { compilePathPattern, normalFormProblem } from '../path-match.js';

/** A binding's name: lower case, so that `{Owner}` and `{owner}` are never two names for one thing. */
const NAME = /^[a-z][a-z0-9_]*$/;
/** A segment that opens with `{` or closes with `}`: meant as a binding. */
const BINDING = /^\{([^{}]*)\}$/;

export interface Binding {
  readonly name: string;
  /** The segment as it is in the path's normal form (for messages). */
  readonly segment: string;
  /** The segment percent-decoded, or undefined when it is not UTF-8. */
  readonly value: string | undefined;
}

export interface PathTemplate {
  readonly text: string;
  /** The names, in the order of their segments. */
  readonly names: readonly string[];
  /** The bindings in the order of `names`, or undefined when the path (normal form) does not match. */
  bind(path: string): readonly Binding[] | undefined;
}

/** The segment decoded once, as the app's router would; undefined for bytes that are not UTF-8. */
export function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** Compiles a template; returns an error message (naming the fix) instead when it is invalid. */
export function compilePathTemplate(text: string): PathTemplate | string {
  const problem = normalFormProblem(text);
  if (problem) return problem;
  const segments = text.split('/').slice(1);
  const names: string[] = [];
  const positions: number[] = [];
  for (const [i, s] of segments.entries()) {
    const binding = BINDING.exec(s);
    if (binding) {
      const name = binding[1];
      if (!NAME.test(name)) {
        return `template "${text}": "{${name}}": a name is a lower-case letter, then lower-case letters, digits or "_", e.g. {owner}`;
      }
      if (names.includes(name)) return `template "${text}": "{${name}}" is bound twice; give each segment its own name`;
      names.push(name);
      positions.push(i);
    } else if (s.includes('{') || s.includes('}')) {
      return `template "${text}": "{" and "}" enclose a name that is a whole segment, e.g. /sandboxes/{owner}/files`;
    } else if (s.includes('*') && s !== '*' && s !== '**') {
      return `template "${text}": "*" and "**" must be whole segments, e.g. /sandboxes/{owner}/* or /sandboxes/{owner}/**`;
    } else if (s === '**' && i !== segments.length - 1) {
      return `template "${text}": "**" is only allowed as the last segment`;
    }
  }
  const glob = `/${segments.map((s, i) => (positions.includes(i) ? '*' : s)).join('/')}`;
  if (names.length === 0)
    return `template "${text}" binds no segment: write it as { glob: ${glob} }, or name a segment {like_this}`;
  const matches = compilePathPattern({ glob });
  // The checks above are the glob's own, so this is only a guard against the two drifting apart.
  if (typeof matches === 'string') return `template "${text}": ${matches}`;
  return {
    text,
    names,
    bind(path) {
      if (!matches(path)) return undefined;
      const parts = path.split('/');
      return names.map((name, n) => {
        const segment = parts[positions[n] + 1];
        return { name, segment, value: decodeSegment(segment) };
      });
    },
  };
}
