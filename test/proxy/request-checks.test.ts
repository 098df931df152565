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
