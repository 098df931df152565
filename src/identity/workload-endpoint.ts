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
  if (address.startsWith('unix:')) {
    if (!address.startsWith('unix://')) bad('a unix address must be a URI with an absolute path (unix:///...)');
    const rest = address.slice('unix://'.length);
    if (!rest.startsWith('/'))
      bad('a unix address has no authority part: the path starts right after unix:// (three slashes)');
    if (rest === '/' || rest.endsWith('/')) bad('the path must name the socket file');
    return { address, grpcTarget: `unix://${rest}` };
  }
  if (address.startsWith('tcp:')) {
    if (!address.startsWith('tcp://')) bad('a tcp address must be a URI (tcp://IP:PORT)');
    const rest = address.slice('tcp://'.length);
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(rest);
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
