// Workload API endpoint addresses (SPIFFE Workload Endpoint §4): `unix:///absolute/path` or
// `tcp://IP:PORT`, nothing else. Parsed by hand and strictly; a bad address throws ERR_CONFIG_INVALID
// that names where it came from.
import { isIP } from 'node:net';
import { SidecarError } from '../errors.js';

export interface WorkloadEndpoint {
  /** The address as configured. */
  readonly address: string;
  /** The target string for @grpc/grpc-js. */
  readonly grpcTarget: string;
}

const HINT = 'use unix:///absolute/path/to/agent.sock or tcp://IP:PORT';

export function parseWorkloadEndpoint(address: string, source: string): WorkloadEndpoint {
  const bad = (why: string): never => {
    throw new SidecarError('ERR_CONFIG_INVALID', `${source} ${JSON.stringify(address)}: ${why}; ${HINT}`);
  };
  if (!address) bad('the address is empty');
  if (/[\s?#]/.test(address)) bad('a query, a fragment or white space is not allowed');
  // RFC 3986: the scheme is case-insensitive.
  const colon = address.indexOf(':');
  const scheme = colon > 0 ? address.slice(0, colon).toLowerCase() : '';
  const rest = address.slice(colon + 1);
  if (scheme === 'unix') {
    // An empty authority (unix:///path) or none (unix:/path), never one of its own; the path is absolute.
    let path = rest;
    if (rest.startsWith('//')) {
      path = rest.slice(2);
      if (!path.startsWith('/'))
        bad('a unix address has no authority part: the path starts right after unix:// (three slashes)');
    } else if (!rest.startsWith('/')) {
      bad('a unix address must be a URI with an absolute path (unix:///...)');
    }
    if (path === '/' || path.endsWith('/')) bad('the path must name the socket file');
    // The path is a URI's: percent-encoded bytes are the file name's (unix:///run/my%20agent.sock).
    let file = '';
    try {
      file = decodeURIComponent(path);
    } catch {
      bad('the path has an invalid percent-encoding');
    }
    // grpc-js cannot take a target with a line break, and no socket file is named with a control character.
    // eslint-disable-next-line no-control-regex -- control characters are what this looks for
    if (/[\x00-\x1f\x7f]/.test(file)) bad('the path must not contain a control character (NUL, a line break)');
    if (file.endsWith('/')) bad('the path must name the socket file');
    return { address, grpcTarget: `unix://${file}` };
  }
  if (scheme === 'tcp') {
    if (!rest.startsWith('//')) bad('a tcp address must be a URI (tcp://IP:PORT)');
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(rest.slice(2));
    if (!m) bad('a tcp address must be an IP:port, with no user info and no path');
    const host = (m as RegExpExecArray)[1] ?? (m as RegExpExecArray)[2];
    const port = Number((m as RegExpExecArray)[3]);
    const family = isIP(host);
    if (family === 0 || ((m as RegExpExecArray)[1] !== undefined) !== (family === 6))
      bad(`"${host}" is not an IP address`);
    if (port === 0 || port > 65535) bad('the port must be 1-65535');
    return { address, grpcTarget: family === 6 ? `ipv6:[${host}]:${port}` : `ipv4:${host}:${port}` };
  }
  return bad('the scheme must be unix or tcp');
}
