// Which verified claim goes to which request header (`--claim-header realm_access.roles=x-roles`, and
// `claim_headers:` in the policy file), checked once at startup. A bad flag throws ERR_CONFIG_INVALID; a
// bad policy entry comes back as a message that names it (the policy file makes it ERR_POLICY_INVALID).
// It lives in authz, below the proxy, because the policy file compiles it; proxy/claim-headers.ts builds
// the headers per request and re-exports this.
import { SidecarError } from '../errors.js';
import { formatClaimPath, parseClaimPath } from './claim-path.js';

/** One mapping: the claim path as written, its keys, and the header (lowercase) that carries its value. */
export interface ClaimHeaderMapping {
  readonly text: string;
  readonly path: readonly string[];
  readonly header: string;
}

export const MAX_CLAIM_HEADER_NAME_LENGTH = 64;

/** RFC 9110 §5.1: a field name is a token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const VISIBLE = /^[\x20-\x7e]*$/;

const HOP_BY_HOP = 'describes one connection, so it is never forwarded';
const FRAMING = 'frames or routes the request, so the proxy sets it';
const CREDENTIAL = 'carries a credential, and a claim must never pose as one';
/**
 * Names a claim can never be sent under, and why. `expect` and `http2-settings` join RFC 9110's
 * hop-by-hop list because the proxy answers the one and HTTP/2 upgrades use the other.
 */
const REFUSED: ReadonlyMap<string, string> = new Map([
  ['connection', HOP_BY_HOP],
  ['keep-alive', HOP_BY_HOP],
  ['transfer-encoding', HOP_BY_HOP],
  ['te', HOP_BY_HOP],
  ['trailer', HOP_BY_HOP],
  ['upgrade', HOP_BY_HOP],
  ['expect', HOP_BY_HOP],
  ['http2-settings', HOP_BY_HOP],
  ['host', FRAMING],
  ['content-length', FRAMING],
  ['authorization', CREDENTIAL],
  ['cookie', CREDENTIAL],
]);

const FLAG_HOW =
  'write it as --claim-header realm_access.roles=x-roles (a claim name with a dot goes in double quotes: ' +
  `--claim-header '"kubernetes.io".namespace=x-k8s-namespace')`;

/** Text from a flag or a file in quotes, safe to put in a message (no raw control characters, not too long). */
function quoted(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}...` : text);
}

/** As `quoted`, but bare when it is plain enough to read unquoted. */
function shown(text: string): string {
  return text.length <= 80 && VISIBLE.test(text) ? text : quoted(text);
}

/** The header name, lowercased, or why it cannot carry a claim. */
function headerName(written: string): { header: string } | { why: string } {
  if (written === '') return { why: 'the header name is missing' };
  if (written.startsWith(':')) {
    return { why: `${shown(written)} is a pseudo-header; name an ordinary header such as x-roles` };
  }
  if (!TOKEN.test(written)) {
    return { why: `${quoted(written)} is not a header name: use letters, digits and "-", such as x-roles` };
  }
  // CGI-style apps read `_` as `-`: `x_spiffe_id` would be their x-spiffe-id. Only `-`, so that a name can be
  // compared with the sidecar's own as written.
  if (written.includes('_')) {
    return { why: `${quoted(written)} has "_", which some apps read as "-": write it with "-", such as x-roles` };
  }
  if (written.length > MAX_CLAIM_HEADER_NAME_LENGTH) {
    return { why: `header name ${shown(written)} is longer than ${MAX_CLAIM_HEADER_NAME_LENGTH} characters` };
  }
  const header = written.toLowerCase();
  // Compared with `_` read as `-`, as the proxy strips headers: CGI-style apps read `content_length` as
  // Content-Length.
  const folded = header.replaceAll('_', '-');
  const why = REFUSED.get(folded) ?? (folded.startsWith('proxy-') ? `${HOP_BY_HOP} or ${CREDENTIAL}` : undefined);
  return why ? { why: `header ${header} ${why}; name another header, such as x-roles` } : { header };
}

/** A mapping, or why it is wrong; `claim` names the claim in that message. */
function mapping(text: string, written: string, claim: string): ClaimHeaderMapping | string {
  const path = parseClaimPath(text);
  if (typeof path === 'string') return `${claim} ${path}`;
  const name = headerName(written);
  return 'why' in name ? name.why : { text, path, header: name.header };
}

/** Where `value` (`CLAIM=HEADER`) splits: the last `=` outside quotes, since a quoted claim name may hold one. */
function lastEquals(value: string): number {
  let quoted = false;
  let split = -1;
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '"') quoted = !quoted;
    else if (value[i] === '=' && !quoted) split = i;
  }
  return split;
}

/** `--claim-header CLAIM=HEADER`; throws ERR_CONFIG_INVALID naming the flag and how to write it. */
export function parseClaimHeaderFlag(value: string): ClaimHeaderMapping {
  const fail = (why: string): never => {
    throw new SidecarError('ERR_CONFIG_INVALID', `--claim-header ${shown(value)}: ${why}; ${FLAG_HOW}`);
  };
  const split = lastEquals(value);
  if (split === -1) fail('expected CLAIM=HEADER');
  const text = value.slice(0, split);
  const result = mapping(text, value.slice(split + 1), text === '' ? 'the claim' : `the claim ${shown(text)}`);
  return typeof result === 'string' ? fail(result) : result;
}

/**
 * The `claim_headers:` entries of a policy file (claim path → header name), in order, or a message
 * naming the first bad entry (`where` names the mapping). One header carries one claim.
 */
export function compileClaimHeaders(
  entries: Iterable<[string, unknown]>,
  where: string,
): readonly ClaimHeaderMapping[] | string {
  const compiled: ClaimHeaderMapping[] = [];
  const byHeader = new Map<string, string>();
  for (const [text, written] of entries) {
    const entry = `${where}: ${shown(text)}`;
    if (typeof written !== 'string') return `${entry}: expected a header name such as x-roles`;
    const result = mapping(text, written, 'the claim');
    if (typeof result === 'string') return `${entry}: ${result}`;
    const earlier = byHeader.get(result.header);
    if (earlier !== undefined) {
      return `${entry}: header ${result.header} already carries claim ${earlier}; map each header once`;
    }
    byHeader.set(result.header, formatClaimPath(result.path));
    compiled.push(result);
  }
  return compiled;
}
