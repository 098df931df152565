// VERIFIER-RULES F4-F6: Workload API endpoint addresses, exactly as the Workload Endpoint spec allows.
import { describe, expect, it } from 'vitest';
import { SidecarError } from '../../src/errors.js';
import { parseWorkloadEndpoint } from '../../src/identity/workload-endpoint.js';

describe('Workload API endpoint addresses', () => {
  it.each([
    ['unix:///run/spire/sockets/agent.sock', 'unix:///run/spire/sockets/agent.sock'],
    ['unix:///tmp/a', 'unix:///tmp/a'],
    // RFC 3986: no authority at all is the same path; the scheme is case-insensitive; the path is percent-decoded.
    ['unix:/tmp/a', 'unix:///tmp/a'],
    ['UNIX:///tmp/a', 'unix:///tmp/a'],
    ['unix:///run/my%20agent.sock', 'unix:///run/my agent.sock'],
    ['TCP://127.0.0.1:8000', 'ipv4:127.0.0.1:8000'],
    ['tcp://127.0.0.1:8000', 'ipv4:127.0.0.1:8000'],
    ['tcp://[::1]:8000', 'ipv6:[::1]:8000'],
  ])('accepts %s', (address, target) => {
    expect(parseWorkloadEndpoint(address, '--workload-api-socket')).toEqual({ address, grpcTarget: target });
  });

  it.each([
    ['', 'empty'],
    ['unix:opaque', 'absolute path'],
    ['unix://', 'no authority'],
    ['unix://foo', 'no authority'],
    ['unix://foo?x', 'query'],
    ['unix://foo#x', 'fragment'],
    ['unix:///path?x=1', 'query'],
    ['unix://john:doe@foo/path', 'no authority'],
    ['unix:///', 'name the socket file'],
    ['unix:///run/spire/', 'name the socket file'],
    ['unix:', 'absolute path'],
    ['unix:/', 'name the socket file'],
    ['unix:///tmp/a%zz', 'percent-encoding'],
    ['unix:///tmp/a%00', 'NUL'],
    ['unix:///tmp/a%0Ab.sock', 'line break'],
    ['unix:///tmp/x%2F', 'name the socket file'],
    ['tcp://foo:8000', 'IP'],
    ['tcp://foo', 'IP:port'],
    ['tcp://1.2.3.4', 'IP:port'],
    ['tcp://1.2.3.4:5/path', 'IP:port'],
    ['tcp://1.2.3.4:5?x', 'query'],
    ['tcp://user@1.2.3.4:5', 'IP:port'],
    ['tcp://1.2.3.4:0', 'port'],
    ['tcp://1.2.3.4:70000', 'port'],
    ['tcp://[::1:8000', 'IP:port'],
    ['tcp:opaque', 'URI'],
    ['blah', 'scheme'],
    ['http://127.0.0.1:8000', 'scheme'],
    ['/run/spire/sockets/agent.sock', 'scheme'],
  ])('rejects %j (%s)', (address, fragment) => {
    let thrown: unknown;
    try {
      parseWorkloadEndpoint(address, '--workload-api-socket');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SidecarError);
    expect((thrown as SidecarError).code).toBe('ERR_CONFIG_INVALID');
    expect((thrown as SidecarError).message).toContain('--workload-api-socket');
    expect((thrown as SidecarError).message).toContain(fragment);
  });
});
