// The Exchange, driven directly: one access line when it ends and only if a decision was made, a decision
// that comes after the caller left, the outcome of a cut response, the budget of denied lines (allowed
// lines are never dropped), and the path without its query.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PeerIdentity } from '../../src/authn/identity.js';
import { type AccessLog, auditPath, Exchange, msText } from '../../src/proxy/access-log.js';
import { REJECTION_LINES_BURST } from '../../src/proxy/rejection-log.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { countingMetrics } from '../helpers/proxy-unit.js';
import { capturingLogger } from '../helpers/sidecar.js';

const CALLER: PeerIdentity = {
  method: 'mtls',
  id: parseSpiffeId('spiffe://example.org/ns/prod/sa/client'),
  leafSha256: 'ab',
};
const ALLOWED = { admitted: true, identity: CALLER, judged: { allow: true, rule: 'r' } } as const;
const DENIED = { admitted: false, identity: CALLER, judged: { allow: false, reason: 'no_matching_rule' } } as const;

function access(level: 'info' | 'warn' = 'info'): AccessLog & { logs: Record<string, unknown>[] } {
  const { log, logs } = capturingLogger(level);
  return { log, logs, metrics: countingMetrics(), cutByDrain: false };
}

/** Logger lines arrive after a turn of the event loop. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('Exchange', () => {
  it('one line at the end, with the fields of the decision and of the exchange; the metric too', async () => {
    const a = access();
    const ex = new Exchange(a, 'http/1.1', 'GET', '/v1/x?token=secret', '10.0.0.1', undefined);
    ex.judged(ALLOWED);
    ex.reached();
    ex.bytesOut += 10;
    await settle();
    expect(a.logs).toEqual([]);
    ex.end(200, false);
    ex.end(200, false);
    await settle();
    expect(a.logs).toHaveLength(1);
    expect(a.logs[0]).toMatchObject({
      level: 'info',
      event: 'authz',
      peer: 'spiffe://example.org/ns/prod/sa/client',
      auth: 'mtls',
      method: 'GET',
      path: '/v1/x',
      decision: 'allow',
      rule: 'r',
      protocol: 'http/1.1',
      status: 200,
      bytes_in: 0,
      bytes_out: 10,
      request_id: ex.id,
      remote: '10.0.0.1',
      msg: 'authorization decision',
    });
    expect(a.logs[0]).not.toHaveProperty('outcome');
    expect(JSON.stringify(a.logs)).not.toContain('secret');
    expect((a.metrics as ReturnType<typeof countingMetrics>).count('request', 200)).toBe(1);
  });

  it('no decision (a refusal before one): no access line, the request still counted', async () => {
    const a = access();
    new Exchange(a, 'http/1.1', 'GET', '/', undefined, undefined).end(401, false);
    await settle();
    expect(a.logs).toEqual([]);
    expect((a.metrics as ReturnType<typeof countingMetrics>).count('request', 401)).toBe(1);
  });

  it('a decision made after the caller left is logged then, as a reset', async () => {
    const a = access();
    const ex = new Exchange(a, 'h2', 'GET', '/slow-token', undefined, undefined);
    ex.end(0, true);
    ex.judged(ALLOWED);
    await settle();
    expect(a.logs).toEqual([expect.objectContaining({ path: '/slow-token', status: 0, outcome: 'caller_reset' })]);
  });

  it('the first outcome reported is the one logged; a cut after a drain ran out says so', async () => {
    const a = access();
    const ex = new Exchange(a, 'http/1.1', 'GET', '/a', undefined, undefined);
    ex.judged(ALLOWED);
    ex.fail('upstream_timeout');
    ex.fail('upstream_error');
    ex.end(504, false);
    a.cutByDrain = true;
    const cut = new Exchange(a, 'http/1.1', 'GET', '/b', undefined, undefined);
    cut.judged(ALLOWED);
    cut.end(200, true);
    await settle();
    expect(a.logs.map((l) => l.outcome)).toEqual(['upstream_timeout', 'drain_timeout']);
  });

  it('every decision has its line, denials included: the audit trail is never sampled', async () => {
    const a = access();
    const line = (admission: typeof ALLOWED | typeof DENIED) => {
      const ex = new Exchange(a, 'http/1.1', 'GET', '/', undefined, undefined);
      ex.judged(admission);
      ex.end(admission.admitted ? 200 : 403, false);
    };
    for (let i = 0; i < REJECTION_LINES_BURST + 5; i++) line(DENIED);
    for (let i = 0; i < 50; i++) line(ALLOWED);
    await settle();
    expect(a.logs.filter((l) => l.decision === 'deny')).toHaveLength(REJECTION_LINES_BURST + 5);
    expect(a.logs.filter((l) => l.decision === 'allow')).toHaveLength(50);
    expect(a.logs.some((l) => 'suppressed' in l)).toBe(false);
  });

  it('a denial let through by dry-run is marked', async () => {
    const a = access();
    for (let i = 0; i < REJECTION_LINES_BURST + 5; i++) {
      const ex = new Exchange(a, 'http/1.1', 'GET', '/', undefined, undefined);
      ex.judged({ ...DENIED, admitted: true });
      ex.end(200, false);
    }
    await settle();
    expect(a.logs).toHaveLength(REJECTION_LINES_BURST + 5);
    expect(a.logs[0]).toMatchObject({ decision: 'deny', dry_run: true, reason: 'no_matching_rule' });
  });

  it('callers and addresses that alternate keep their own peer, auth and remote in each line', async () => {
    // The peer members are made once per identity, the address quoted once per change: never another's.
    const other: PeerIdentity = {
      method: 'jwt-svid',
      id: parseSpiffeId('spiffe://example.org/ns/dev/sa/other'),
      subject: 's',
    };
    const a = access();
    const callers = [
      [CALLER, '10.0.0.1'],
      [other, '10.0.0.2'],
      [CALLER, '10.0.0.2'],
      [other, '10.0.0.1'],
      [CALLER, '10.0.0.1'],
    ] as const;
    for (const [identity, remote] of callers) {
      const ex = new Exchange(a, 'http/1.1', 'GET', '/', remote, undefined);
      ex.judged({ admitted: true, identity, judged: { allow: true, rule: 'r' } });
      ex.end(200, false);
    }
    await settle();
    expect(a.logs.map((line) => [line.peer, line.auth, line.remote])).toEqual(
      callers.map(([identity, remote]) => [identity.id.toString(), identity.method, remote]),
    );
  });

  it('requests in any order keep their own method, path, decision, rule, reason, dry_run and protocol', async () => {
    // The members from method to protocol are made again only when one of their inputs changes: never another's.
    const decisions = [
      { allow: true, rule: 'r' },
      { allow: true, rule: 'other rule' },
      { allow: false, reason: 'no_matching_rule' },
      { allow: false, reason: 'rule_denied', rule: 'r' },
      // The same rule, another reason (a rate limit, then its store unreachable): only `reason` tells them apart.
      { allow: false, reason: 'rate_limited', rule: 'r' },
    ] as const;
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST', 'DELETE'),
      url: fc.constantFrom('/', '/a', '/a?q=1', '/b?secret=x', '/"quoted"'),
      decision: fc.constantFrom(...decisions),
      admitted: fc.boolean(),
      protocol: fc.constantFrom('http/1.1' as const, 'h2' as const),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 12 }), async (requests) => {
        const a = access();
        for (const r of requests) {
          const ex = new Exchange(a, r.protocol, r.method, r.url, undefined, undefined);
          ex.judged({ admitted: r.decision.allow || r.admitted, identity: CALLER, judged: r.decision });
          ex.end(200, false);
        }
        await settle();
        const members = (line: Record<string, unknown>) =>
          [line.method, line.path, line.decision, line.rule, line.reason, line.dry_run, line.protocol] as const;
        expect(a.logs.map(members)).toEqual(
          requests.map((r) => [
            r.method,
            auditPath(r.url),
            r.decision.allow ? 'allow' : 'deny',
            'rule' in r.decision ? r.decision.rule : undefined,
            r.decision.allow ? undefined : r.decision.reason,
            !r.decision.allow && r.admitted ? true : undefined,
            r.protocol,
          ]),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('at --log-level warn: no line', async () => {
    const a = access('warn');
    const ex = new Exchange(a, 'http/1.1', 'GET', '/', undefined, undefined);
    ex.judged(ALLOWED);
    ex.end(200, false);
    await settle();
    expect(a.logs).toEqual([]);
  });

  it('an id per request, always 32 random hex characters; a valid traceparent gives the trace id beside it', () => {
    const a = access();
    const traced = new Exchange(a, 'h2', 'GET', '/', undefined, `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`);
    expect([traced.traceId, traced.traced]).toEqual(['a'.repeat(32), true]);
    expect(traced.id).toMatch(/^[0-9a-f]{32}$/);
    expect(traced.id).not.toBe('a'.repeat(32));
    const fresh = new Exchange(a, 'h2', 'GET', '/', undefined, 'garbage');
    expect(fresh.id).toMatch(/^[0-9a-f]{32}$/);
    expect(fresh.traced).toBe(false);
  });

  it('auditPath: no query string, at most 256 characters', () => {
    const long = `/v1/${'a'.repeat(300)}`;
    expect(auditPath(`${long}?token=secret`)).toBe(`${long.slice(0, 256)}...`);
    expect(auditPath('/short?token=secret')).toBe('/short');
    expect(auditPath(undefined)).toBe('');
  });

  it('msText prints a duration to the microsecond exactly as String(Math.round(ms * 1000) / 1000) does', () => {
    for (const v of [
      0,
      0.0004,
      0.0005,
      0.001,
      0.01,
      0.1,
      0.12,
      0.123,
      0.1234,
      1,
      1.5,
      2.05,
      15.007,
      999.9999,
      1e9,
      1e12 + 0.5,
    ])
      expect(msText(v)).toBe(String(Math.round(v * 1000) / 1000));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.double({ min: 0, max: 10, noNaN: true }),
          fc.double({ min: 0, max: 1e13, noNaN: true }),
          fc.integer({ min: 0, max: 10_000_000 }).map((us) => us / 1000),
        ),
        (v) => {
          expect(msText(v)).toBe(String(Math.round(v * 1000) / 1000));
        },
      ),
      { numRuns: 20_000 },
    );
  });
});
