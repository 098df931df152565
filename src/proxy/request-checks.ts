// The checks of a request's head that come before asking who is calling: framing that the app could read
// otherwise than we do, and more header fields than an app reads. A failure is a status and a reason code;
// the connection is closed after the answer, since its framing cannot be trusted.

export interface HeadRefusal {
  readonly status: 400 | 431 | 501;
  readonly reason:
    | 'too_many_headers'
    | 'duplicate_host'
    | 'bad_host'
    | 'authority_mismatch'
    | 'duplicate_authorization'
    | 'bad_header_field'
    | 'bad_transfer_encoding'
    | 'unsupported_transfer_coding';
}

/**
 * A Host value: a host name (unreserved characters) or an IP literal (with a zone, RFC 6874: `[fe80::1%25eth0]`),
 * and an optional port, which may be empty (RFC 3986 `port = *DIGIT`).
 */
const HOST_VALUE = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\])(?::[0-9]{0,5})?$/;
/** The authority of an absolute-form request-target (with userinfo or escapes, it matches no valid Host). */
const ABSOLUTE_AUTHORITY = /^https?:\/\/([^/?#]*)/i;

/**
 * `rawHeaders`: Node's flat [name, value, ...] list (for HTTP/2, without pseudo-headers).
 * - More than `maxHeaderCount` fields: 431. A default Node app reads at most 2000 lines, and our identity
 *   headers go first, but an app with a lower limit must not be made to miss them (and nothing needs 100).
 * - Two `Host` fields (RFC 9112 §3.2) or two `Authorization` fields (a singleton field, RFC 9110 §11.6.2:
 *   the app could read the one we did not check): 400.
 * - A `Host` that is not a host name or IP literal with an optional port (RFC 9112 §3.2: 400), such as
 *   `a b/../c`; and one that is not the authority of an absolute-form `target` (`GET http://b/ HTTP/1.1` with
 *   `Host: a`): RFC 9112 §3.2.2 has the target's win, some frameworks take the one, some the other.
 * - `Content_Length` or `Transfer_Encoding`: 400, a framing field's name as an app folding `_` to `-` reads it.
 * - A transfer coding other than one `chunked` (RFC 9112 §6.1: 501): we would forward the body de-chunked
 *   but still coded, and the app would read compressed bytes as the body.
 */
export function checkRequestHead(
  rawHeaders: readonly string[],
  maxHeaderCount: number,
  target?: string,
): HeadRefusal | undefined {
  if (rawHeaders.length > 2 * maxHeaderCount) return { status: 431, reason: 'too_many_headers' };
  let hosts = 0;
  let host: string | undefined;
  let authorizations = 0;
  let codings: string[] | undefined;
  let lookalike = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    // Only names of these lengths can match: most fields are passed over without lower-casing them.
    if (name.length === 4) {
      if (name.toLowerCase() === 'host') {
        hosts++;
        host = rawHeaders[i + 1];
      }
    } else if (name.length === 13) {
      if (name.toLowerCase() === 'authorization') authorizations++;
    } else if (name.length === 17) {
      const lower = name.toLowerCase();
      if (lower === 'transfer-encoding') {
        codings ??= [];
        for (const coding of rawHeaders[i + 1].split(',')) codings.push(coding.trim().toLowerCase());
      } else if (lower === 'transfer_encoding') lookalike = true;
    } else if (name.length === 14 && name.includes('_') && name.toLowerCase() === 'content_length') lookalike = true;
  }
  // A framing field's name with `_` for `-`: we do not frame by it, an app that reads `_` as `-` (as it does for
  // the identity headers we strip) might.
  if (lookalike) return { status: 400, reason: 'bad_header_field' };
  if (hosts > 1) return { status: 400, reason: 'duplicate_host' };
  // Empty is a Host's value for a target without an authority (RFC 9112 §3.2); anything else must be one.
  if (host !== undefined && host !== '' && !HOST_VALUE.test(host)) return { status: 400, reason: 'bad_host' };
  if (target !== undefined && target.charCodeAt(0) !== 0x2f && target !== '*') {
    const authority = ABSOLUTE_AUTHORITY.exec(target)?.[1];
    if (authority !== undefined && authority.toLowerCase() !== (host ?? '').toLowerCase()) {
      return { status: 400, reason: 'authority_mismatch' };
    }
  }
  if (authorizations > 1) return { status: 400, reason: 'duplicate_authorization' };
  if (codings !== undefined && (codings.length !== 1 || codings[0] !== 'chunked')) {
    return codings.every((c) => c === 'chunked')
      ? { status: 400, reason: 'bad_transfer_encoding' }
      : { status: 501, reason: 'unsupported_transfer_coding' };
  }
  return undefined;
}
