// checkRequestHead: the checks of a request head made before authentication (431 too many fields, 400
// duplicate Host/Authorization or a bad chunked list, 501 any other transfer coding), as a table.
import { describe, expect, it } from 'vitest';
import { checkRequestHead, type HeadRefusal } from '../../src/proxy/request-checks.js';

const fields = (n: number): string[] => Array.from({ length: n }, (_, i) => [`x-f${i}`, 'v']).flat();

const cases: [what: string, raw: string[], max: number, expected: HeadRefusal | undefined][] = [
  ['no fields at all', [], 100, undefined],
  ['an ordinary request', ['Host', 'a', 'Accept', '*/*', 'Authorization', 'Bearer x'], 100, undefined],
  ['exactly the maximum number of fields', fields(100), 100, undefined],
  ['one field past the maximum', fields(101), 100, { status: 431, reason: 'too_many_headers' }],
  ['a lower maximum', fields(3), 2, { status: 431, reason: 'too_many_headers' }],
  ['two Host fields', ['Host', 'a', 'host', 'b'], 100, { status: 400, reason: 'duplicate_host' }],
  ['two Host fields, same value', ['HOST', 'a', 'Host', 'a'], 100, { status: 400, reason: 'duplicate_host' }],
  [
    'two Authorization fields, any case',
    ['Authorization', 'Bearer a', 'AUTHORIZATION', 'Bearer b'],
    100,
    { status: 400, reason: 'duplicate_authorization' },
  ],
  ['a field that only starts like host', ['Hosts', 'a', 'Host', 'b'], 100, undefined],
  ['transfer-encoding: chunked', ['Transfer-Encoding', 'chunked'], 100, undefined],
  ['transfer-encoding: Chunked, spaced', ['transfer-encoding', '  CHUNKED '], 100, undefined],
  [
    'chunked twice in one field',
    ['Transfer-Encoding', 'chunked, chunked'],
    100,
    { status: 400, reason: 'bad_transfer_encoding' },
  ],
  [
    'chunked in two fields',
    ['Transfer-Encoding', 'chunked', 'transfer-encoding', 'chunked'],
    100,
    { status: 400, reason: 'bad_transfer_encoding' },
  ],
  ['gzip', ['Transfer-Encoding', 'gzip'], 100, { status: 501, reason: 'unsupported_transfer_coding' }],
  [
    'gzip then chunked',
    ['Transfer-Encoding', 'gzip, chunked'],
    100,
    { status: 501, reason: 'unsupported_transfer_coding' },
  ],
  ['identity', ['Transfer-Encoding', 'identity'], 100, { status: 501, reason: 'unsupported_transfer_coding' }],
  ['an empty coding', ['Transfer-Encoding', ''], 100, { status: 501, reason: 'unsupported_transfer_coding' }],
  // The order of the checks: the field count first, then Host, then Authorization, then the coding.
  [
    'too many fields wins over a duplicate Host',
    ['Host', 'a', 'Host', 'b'],
    1,
    { status: 431, reason: 'too_many_headers' },
  ],
  [
    'a duplicate Host wins over a duplicate Authorization',
    ['Authorization', 'a', 'Authorization', 'b', 'Host', 'a', 'Host', 'b'],
    100,
    { status: 400, reason: 'duplicate_host' },
  ],
  [
    'a duplicate Authorization wins over a bad coding',
    ['Transfer-Encoding', 'gzip', 'Authorization', 'a', 'Authorization', 'b'],
    100,
    { status: 400, reason: 'duplicate_authorization' },
  ],
];

describe('checkRequestHead', () => {
  it.each(cases)('%s', (_what, raw, max, expected) => {
    expect(checkRequestHead(raw, max)).toEqual(expected);
  });
});

describe('checkRequestHead: framing fields spelt with `_`', () => {
  it.each([['Content_Length'], ['content_length'], ['Transfer_Encoding'], ['TRANSFER_ENCODING']])(
    '%s is refused: an app that reads _ as - would frame the body by it',
    (name) => {
      expect(checkRequestHead(['Host', 'x', name, '5'], 100)).toEqual({ status: 400, reason: 'bad_header_field' });
    },
  );

  it('other fields with _ pass (the identity headers among them are stripped later)', () => {
    expect(checkRequestHead(['Host', 'x', 'x_custom_field', '1', 'Content-Length', '5'], 100)).toBeUndefined();
  });
});

describe('checkRequestHead: the Host value, and an absolute-form target', () => {
  it.each([
    ['a name', 'app.example'],
    ['a name and port', 'app.example:8443'],
    ['unreserved characters', 'my_app-1.svc~x'],
    ['an IPv4 address', '10.0.0.1:80'],
    ['an IPv6 literal', '[::1]:8443'],
    ['an IPv6 literal with a zone (RFC 6874)', '[fe80::1%25eth0]:8443'],
    ['an empty port (RFC 3986: *DIGIT)', 'example.com:'],
    ['a trailing dot and capitals', 'Orders.Example.'],
    ['empty (a target without an authority)', ''],
  ])('accepts %s', (_what, host) => {
    expect(checkRequestHead(['Host', host], 100)).toBeUndefined();
  });

  it.each([
    ['a space and a path', 'a b/../c'],
    ['a slash', 'app/admin'],
    ['userinfo', 'user@app'],
    ['a percent escape', 'app%2eexample'],
    ['a port that is not digits', 'app:http'],
    ['a port of six digits', 'app:123456'],
    ['an unclosed IP literal', '[::1'],
    ['a comma list', 'a,b'],
  ])('refuses %s with 400 bad_host', (_what, host) => {
    expect(checkRequestHead(['Host', host], 100)).toEqual({ status: 400, reason: 'bad_host' });
  });

  it('an absolute-form target must name the Host it comes with, in any letter case', () => {
    const host = (value: string, target: string) => checkRequestHead(['Host', value], 100, target);
    expect(host('good.example', 'http://good.example/x')).toBeUndefined();
    expect(host('Good.Example:8443', 'https://good.example:8443/x?y')).toBeUndefined();
    expect(host('good.example', '/x')).toBeUndefined();
    expect(host('good.example', '*')).toBeUndefined();
    for (const target of ['http://evil.example/abs', 'http://good.example:80/x', 'https://good.example.evil/']) {
      expect(host('good.example', target), target).toEqual({ status: 400, reason: 'authority_mismatch' });
    }
    // HTTP/1.0 may leave Host out: the target's authority then has no Host to agree with.
    expect(checkRequestHead([], 100, 'http://good.example/')).toEqual({ status: 400, reason: 'authority_mismatch' });
  });
});
