// Issue 21: what a new user types wrong on each command (wrong scheme, missing value, typo'd flag, flag of
// another command, missing path, bad file…) gets one line that names the flag or file, says what is wrong
// and how to fix it: never a stack trace, never blaming the wrong thing. Each row is a message that was
// misleading (or a stack trace) before; the comment says what it said.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiKeyNew } from '../../src/authn/api-key-commands.js';
import { policyCheck } from '../../src/authz/policy-commands.js';
import { certsInit, certsIssue } from '../../src/certs/commands.js';
import { parseCommandLine } from '../../src/cli.js';
import { buildConfig } from '../../src/config.js';
import { isSidecarError } from '../../src/errors.js';
import { parseWebhookOptions } from '../../src/webhook/options.js';
import { runCli } from '../helpers/process.js';

let dir: string;
let ca: string;
const M = ['--mtls-cert-file', '/c/tls.crt', '--mtls-key-file', '/c/tls.key', '--mtls-ca-file', '/c/ca.crt'];
const UP = ['--upstream', 'http://127.0.0.1:8080', '--allow-any'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bad-input-'));
  ca = join(dir, 'ca');
  await certsInit({ 'trust-domain': 'example.org', out: ca });
  await writeFile(join(dir, 'a-file'), 'x');
  await mkdir(join(dir, 'garbage-ca'));
  await writeFile(join(dir, 'garbage-ca', 'ca.crt'), 'garbage');
  await writeFile(join(dir, 'garbage-ca', 'ca.key'), 'garbage');
  await writeFile(join(dir, 'indent.yaml'), 'version: 1\nrules:\n  - name: a\n    effect: allow\n   methods: [GET]\n');
  await writeFile(join(dir, 'typo.yaml'), 'version: 1\nrules:\n  - name: a\n    effect: allow\n    methodz: [GET]\n');
  await writeFile(join(dir, 'ok.yaml'), 'version: 1\nrules:\n  - name: a\n    effect: allow\n');
  await writeFile(join(dir, 'config-typo.yaml'), 'upstream: http://127.0.0.1:8080\nallowany: true\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What the process would print for `args` (without starting anything): `CODE: message`, or `ok`. */
async function attempt(args: string[]): Promise<string> {
  try {
    const command = parseCommandLine(args, {});
    switch (command.command) {
      case 'run':
        buildConfig(command.options);
        break;
      case 'certs-init':
        await certsInit(command.options);
        break;
      case 'certs-issue':
        await certsIssue(command.options);
        break;
      case 'policy-check':
        await policyCheck(command.options, command.method, command.path, new PassThrough());
        break;
      case 'apikey-new':
        apiKeyNew(command.options);
        break;
      case 'inject-webhook':
        parseWebhookOptions(command.options);
        break;
      default:
        break;
    }
    return 'ok';
  } catch (err) {
    if (!isSidecarError(err)) throw err;
    return `${err.code}: ${err.message}`;
  }
}

const P = () => join(dir, 'ok.yaml');
const ID = ['--id', 'spiffe://example.org/ns/prod/sa/web'];

/** [what was typed, the arguments, the code and the fragments the one line must hold, what it must not say] */
const cases: [what: string, args: () => string[], expected: string[], notSaid?: string][] = [
  // was: blamed the trust domain ("issues IDs of trust domain example.org only")
  [
    'certs issue: an https:// ID',
    () => ['certs', 'issue', '--ca', ca, '--id', 'https://example.org/web', '--out', join(dir, 'o1')],
    ['ERR_INVALID_SPIFFE_ID: --id: ', 'scheme', 'did you mean "spiffe://example.org/web"?'],
    'trust domain "example.org" only',
  ],
  // was: blamed the trust domain
  [
    'certs issue: an ID without a path',
    () => ['certs', 'issue', '--ca', ca, '--id', 'spiffe://example.org', '--out', join(dir, 'o2')],
    ['ERR_INVALID_SPIFFE_ID: --id spiffe://example.org: ', 'needs a path', 'spiffe://example.org/ns/prod/sa/web'],
    'trust domain "example.org" only',
  ],
  [
    'certs issue: an ID of another trust domain (this one was right: keep it)',
    () => ['certs', 'issue', '--ca', ca, '--id', 'spiffe://other.org/web', '--out', join(dir, 'o3')],
    ['ERR_INVALID_SPIFFE_ID: --id spiffe://other.org/web: ', 'trust domain "example.org"', 'spiffe://example.org/web'],
  ],
  // was: a TypeError and its stack trace
  [
    'certs issue: a CA directory of garbage',
    () => ['certs', 'issue', '--ca', join(dir, 'garbage-ca'), ...ID, '--out', join(dir, 'o4')],
    ['ERR_CERT_PARSE: --ca ', 'ca.crt is not a PEM certificate'],
  ],
  // was: ENOTDIR "open 'ca/ca.crt/ca.crt'"
  [
    'certs issue: --ca naming the certificate file',
    () => ['certs', 'issue', '--ca', join(ca, 'ca.crt'), ...ID, '--out', join(dir, 'o5')],
    ['ERR_FILE_READ: --ca ', 'a file; give the directory'],
  ],
  // was: an EEXIST stack trace from mkdir
  [
    'certs issue: --out naming a file',
    () => ['certs', 'issue', '--ca', ca, ...ID, '--out', join(dir, 'a-file')],
    ['ERR_FILE_WRITE: --out ', 'a file, not a directory'],
  ],
  // was: accepted, and the SVID outlived its CA (it stops verifying when the CA expires)
  [
    'certs issue: a lifetime past the CA',
    () => ['certs', 'issue', '--ca', ca, ...ID, '--out', join(dir, 'o6'), '--lifetime', '400d'],
    ['ERR_CONFIG_INVALID: --lifetime 400d: the SVID would outlive its CA'],
  ],
  // was: "trust domain characters are limited to lowercase letters…" (the scheme was the problem)
  [
    'certs init: a URL as trust domain',
    () => ['certs', 'init', '--trust-domain', 'https://example.org', '--out', join(dir, 'o7')],
    ['ERR_INVALID_TRUST_DOMAIN: --trust-domain: ', 'not a URL: write example.org'],
  ],
  // was: "Unknown option '--trustdomain'"
  [
    'certs init: a typo in a flag',
    () => ['certs', 'init', '--trustdomain', 'example.org'],
    [
      'ERR_CONFIG_INVALID: unknown flag --trustdomain (did you mean --trust-domain?)',
      "'spiffe-sidecar certs init --help'",
    ],
  ],
  // was: "Unknown option '--id'"
  [
    'certs init: a flag of another command',
    () => ['certs', 'init', '--trust-domain', 'example.org', '--id', 'spiffe://example.org/x'],
    ["ERR_CONFIG_INVALID: --id is a flag of 'certs issue' and 'policy check', not of 'certs init'"],
  ],
  // was: "Option '--trust-domain <value>' argument missing"
  [
    'certs init: a flag without its value',
    () => ['certs', 'init', '--out', join(dir, 'o8'), '--trust-domain'],
    ['ERR_CONFIG_INVALID: --trust-domain needs a value: --trust-domain TD'],
  ],
  // was: "unknown command 'certs '; use 'certs init' or 'certs issue'"
  [
    'certs: flags before the command',
    () => ['certs', '--trust-domain', 'example.org'],
    ["ERR_CONFIG_INVALID: 'certs' needs a command before its flags: 'certs init' or 'certs issue'"],
  ],
  // was: "unknown command 'cert'; see 'spiffe-sidecar --help'"
  [
    'a typo in a command',
    () => ['cert', 'init'],
    ["ERR_CONFIG_INVALID: unknown command 'cert' (did you mean 'certs'?)"],
  ],
  // was: suggested 0.0.0.0:8443, which --outbound refuses
  [
    'run: --outbound with a port alone as LISTEN',
    () => [...M, '--outbound', '25021=https://orders.example:8443,id=spiffe://example.org/orders'],
    ['ERR_CONFIG_INVALID: --outbound ', 'LISTEN "25021" is a port alone; write 127.0.0.1:25021'],
    '0.0.0.0',
  ],
  // was: "the listen address localhost is not loopback"
  [
    'run: --outbound on localhost',
    () => [...M, '--outbound', 'localhost:15001=https://orders.example:8443,id=spiffe://example.org/orders'],
    ['ERR_CONFIG_INVALID: --outbound ', 'write the address, 127.0.0.1:15001 or [::1]:15001, not the name localhost'],
    'is not loopback',
  ],
  // was: "the remote must be https://…" (the scheme was missing: x: was read as one)
  [
    'run: --outbound remote without a scheme',
    () => [...M, '--outbound', '127.0.0.1:15001=orders.example:8443,id=spiffe://example.org/orders'],
    ['ERR_CONFIG_INVALID: --outbound ', 'has no scheme; write https://orders.example:8443'],
  ],
  // was: accepted: the route silently used mTLS and never sent the token
  [
    'run: --outbound audience= without auth=jwt',
    () => [...M, '--outbound', '127.0.0.1:15001=https://o.example:8443,id=spiffe://example.org/o,audience=o'],
    ['ERR_CONFIG_INVALID: --outbound ', 'audience= is for auth=jwt, client-credentials and token-exchange routes'],
  ],
  // was: "no identity source: give --workload-api-socket … or --mtls-cert-file…" (files cannot mint a JWT-SVID)
  [
    'run: --outbound auth=jwt with no token source',
    () => ['--outbound', '127.0.0.1:15001=http://127.0.0.1:9000,auth=jwt,audience=o'],
    ['ERR_CONFIG_INVALID: --outbound ', 'add --workload-api-socket (SPIRE mode), or token-file=PATH'],
  ],
  // was: "only http:// upstreams are supported" (localhost: was read as the scheme)
  [
    'run: --upstream without a scheme',
    () => [...M, '--upstream', 'localhost:8080', '--allow-any'],
    ['ERR_CONFIG_INVALID: --upstream "localhost:8080": no scheme; write http://localhost:8080'],
  ],
  // was: "expected HOST:PORT, e.g. 0.0.0.0:8443" (for the admin port, which should stay on loopback)
  [
    'run: --admin-listen with a port alone',
    () => [...M, ...UP, '--admin-listen', '15000'],
    ['ERR_CONFIG_INVALID: --admin-listen "15000": a port alone; write 127.0.0.1:15000'],
  ],
  // was: three lines: "Option '--upstream' argument is ambiguous. Did you forget…"
  [
    'run: a flag without its value, followed by another flag',
    () => [...M, '--upstream', '--allow-any'],
    ['ERR_CONFIG_INVALID: --upstream needs a value (--upstream URL), but the flag --allow-any follows it'],
  ],
  // was: "Option '--xfcc' does not take an argument"
  [
    'run: a value given to a switch',
    () => [...M, ...UP, '--xfcc=false'],
    ['ERR_CONFIG_INVALID: --xfcc is a switch and takes no value: write --xfcc to turn it on, --no-xfcc to turn it off'],
  ],
  // was: "Unknown option '--trust-domain'"
  [
    'run: a flag of certs init',
    () => ['run', '--trust-domain', 'example.org'],
    ["ERR_CONFIG_INVALID: --trust-domain is a flag of 'certs init', not of 'run'", "'spiffe-sidecar run --help'"],
  ],
  // was: no flag named at all ("invalid trust domain …")
  [
    'run: --k8s-trust-domain as a URL',
    () => [
      ...['--listen', '127.0.0.1:0', '--auth-mode', 'jwt', '--jwt-audience', 'a', '--jwt-issuer', 'k8s=https://k'],
      ...[...UP, '--k8s-trust-domain', 'https://cluster.local'],
    ],
    ['ERR_INVALID_TRUST_DOMAIN: --k8s-trust-domain: ', 'not a URL: write cluster.local'],
  ],
  // was: "cannot read the file (ENOENT)"
  [
    'run: a --config file that does not exist',
    () => ['--config', join(dir, 'nope.yaml')],
    ['ERR_CONFIG_INVALID: --config ', 'cannot read the file (no such file)'],
  ],
  // was: "cannot read the file (EISDIR)"
  [
    'run: a directory as --config',
    () => ['--config', dir],
    ['ERR_CONFIG_INVALID: --config ', '(a directory; give the YAML file)'],
  ],
  // was: no line, no suggestion
  [
    'run: a typo in a --config key',
    () => ['--config', join(dir, 'config-typo.yaml')],
    ['ERR_CONFIG_INVALID: --config ', 'unknown key "allowany" (line 2, column 1); did you mean allow-any?'],
  ],
  // was: no line number
  [
    'policy check: a YAML indentation error',
    () => ['policy', 'check', '--policy-file', join(dir, 'indent.yaml')],
    ['ERR_POLICY_INVALID: --policy-file ', 'not valid YAML or JSON (line 5, column 1: '],
  ],
  // was: no line number, and the place was the rule
  [
    'policy check: a typo in a rule key',
    () => ['policy', 'check', '--policy-file', join(dir, 'typo.yaml')],
    ['ERR_POLICY_INVALID: --policy-file ', 'rules[0]: unknown key "methodz"', '(line 5, column 14)'],
  ],
  // was: no flag named ("invalid SPIFFE ID …")
  [
    'policy check: an https:// caller ID',
    () => ['policy', 'check', '--policy-file', P(), '--id', 'https://example.org/web', 'GET', '/'],
    ['ERR_INVALID_SPIFFE_ID: policy check: --id: ', 'did you mean "spiffe://example.org/web"?'],
  ],
  // was: accepted, and answered deny (no_matching_rule): a trust domain is no caller
  [
    'policy check: a caller ID without a path',
    () => ['policy', 'check', '--policy-file', P(), '--id', 'spiffe://example.org', 'GET', '/'],
    ['ERR_CONFIG_INVALID: policy check: --id spiffe://example.org: ', 'has a path'],
  ],
  // was: 'method "/x": write it in upper case'
  [
    'policy check: PATH METHOD the wrong way round',
    () => ['policy', 'check', '--policy-file', P(), ...ID, '/orders', 'GET'],
    ['ERR_CONFIG_INVALID: policy check: expected METHOD PATH in that order: GET /orders'],
    'upper case',
  ],
  // was: accepted, and answered deny (path_not_normalized)
  [
    'policy check: a path without its slash',
    () => ['policy', 'check', '--policy-file', P(), ...ID, 'GET', 'orders'],
    ['ERR_CONFIG_INVALID: policy check: path "orders": a request path starts with /, e.g. /orders'],
  ],
  // was: "Unknown option '--name'"
  [
    'policy check: a flag of apikey new',
    () => ['policy', 'check', '--policy-file', P(), '--name', 'x'],
    ["ERR_CONFIG_INVALID: --name is a flag of 'apikey new', not of 'policy check'"],
  ],
  // was: "unknown command 'policy test'; use 'policy check' or 'apikey new'"
  [
    'policy: an unknown subcommand',
    () => ['policy', 'test'],
    ["ERR_CONFIG_INVALID: unknown command 'policy test': the command is policy check"],
  ],
  // was: '--expires "1y": not a duration' (a date is fine too)
  [
    'apikey new: an expiry in years',
    () => ['apikey', 'new', '--name', 'k', '--expires', '1y'],
    ['ERR_CONFIG_INVALID: apikey new: --expires "1y": write a duration from now (90d) or an ISO date'],
  ],
  // was: 'write METHOD:PATH' (it was METHOD:PATH, in lower case)
  [
    'apikey new: a lower-case route method',
    () => ['apikey', 'new', '--name', 'k', '--route', 'post:/invoke'],
    ['ERR_CONFIG_INVALID: apikey new: --route "post:/invoke": write the method in upper case: POST:/invoke'],
  ],
  // was: "Unknown option '--upstream'"
  [
    'inject-webhook: a flag of run',
    () => ['inject-webhook', '--image', 'a:1', '--upstream', 'http://127.0.0.1:1'],
    ["ERR_CONFIG_INVALID: --upstream is a flag of 'run', not of 'inject-webhook'"],
  ],
];

describe('bad input gets one line that names the flag and the fix', () => {
  it.each(cases)('%s', async (_, args, expected, notSaid) => {
    const line = await attempt(args());
    expect(line.split('\n'), line).toHaveLength(1);
    for (const fragment of expected) expect(line).toContain(fragment);
    if (notSaid) expect(line).not.toContain(notSaid);
  });

  it('in the real process: one line on stderr, exit 1, never a stack trace (what used to print one)', async () => {
    const runs = [
      ['certs', 'issue', '--ca', join(dir, 'garbage-ca'), ...ID, '--out', join(dir, 'p1')],
      ['certs', 'init', '--trust-domain', 'example.org', '--out', join(dir, 'a-file')],
      ['run', '--upstream', '--allow-any'],
      ['--outbound', '25021=https://o.example:8443,id=spiffe://example.org/o'],
    ];
    const results = await Promise.all(runs.map((args) => runCli(args)));
    for (const [i, result] of results.entries()) {
      expect(result.code, runs[i].join(' ')).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/^spiffe-sidecar: ERR_[A-Z_]+: [^\n]+\n$/);
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
  });
});
