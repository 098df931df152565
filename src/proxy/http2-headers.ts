// Header fields across HTTP versions. HTTP/2 carries the request line in pseudo-headers (`:method`,
// `:path`, `:authority`, `:scheme`) and forbids connection-specific fields (RFC 9113 §8.2.2); HTTP/1.1
// needs `host` and may fold `cookie` only with `; ` (RFC 9113 §8.2.3).
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { ServerHttp2Stream, ServerStreamResponseOptions } from 'node:http2';

const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** An HTTP/2 request's raw fields (flat name/value list) as HTTP/1.1 fields: `host` from `:authority`. */
export function h2RequestToH1(raw: readonly string[]): string[] {
  const out: string[] = [];
  const cookies: string[] = [];
  let authority: string | undefined;
  let host = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name === ':authority') authority = raw[i + 1];
    if (name.startsWith(':')) continue;
    if (name === 'cookie') cookies.push(raw[i + 1]);
    else {
      if (name === 'host') host = true;
      out.push(name, raw[i + 1]);
    }
  }
  if (!host && authority !== undefined) out.unshift('host', authority);
  if (cookies.length > 0) out.push('cookie', cookies.join('; '));
  return out;
}

/**
 * A flat HTTP/1.1-style field list as an HTTP/2 header object: names lower-cased, connection-specific
 * fields dropped (`te` only as `trailers`, which gRPC needs), repeated fields kept as arrays, `host`
 * returned apart (it becomes `:authority`).
 */
export function h1FieldsToH2(flat: readonly string[]): { headers: OutgoingHttpHeaders; host?: string } {
  const headers: Record<string, string | string[]> = {};
  let host: string | undefined;
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i].toLowerCase();
    const value = flat[i + 1];
    if (CONNECTION_SPECIFIC.has(name)) continue;
    if (name === 'te' && value.trim().toLowerCase() !== 'trailers') continue;
    if (name === 'host') {
      host ??= value;
      continue;
    }
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else headers[name] = [previous, value];
  }
  return { headers, host };
}

/** An HTTP/2 response's fields for an HTTP/1.1 response: no pseudo-headers, no connection-specific ones. */
export function h2ResponseToH1(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(':') || CONNECTION_SPECIFIC.has(name) || value === undefined) continue;
    out[name] = value;
  }
  return out;
}

/**
 * Answers an HTTP/2 stream with a status and fields from the app or the remote. Returns false, having
 * sent nothing, when HTTP/2 cannot carry them: a status outside 200-599 (HTTP/1.1 allows up to 999), or
 * a field HTTP/2 allows once that came several times (`content-type: a`, `content-type: b`). Node throws
 * on those, and a throw there would take the process down; the caller answers 502 instead.
 */
export function respondH2(
  stream: ServerHttp2Stream,
  status: number,
  fields: OutgoingHttpHeaders,
  options?: ServerStreamResponseOptions,
): boolean {
  if (!Number.isInteger(status) || status < 200 || status > 599) return false;
  try {
    stream.respond({ ...fields, ':status': status }, options);
    return true;
  } catch {
    return false;
  }
}
