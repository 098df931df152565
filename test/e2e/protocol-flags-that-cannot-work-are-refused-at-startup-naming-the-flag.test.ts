// The protocol flags (--protocol, --upstream-protocol, --proxy-protocol, tcp:// and unix:// upstreams,
// tls:// outbound routes) through the real CLI: a combination that cannot work stops the start with exit
// code 1 and one line that names the flag; a valid one starts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCli, waitForEvent } from '../helpers/process.js';
import { createDevCa, issueSvid, type ServingFiles, tempDir, writeServingFiles } from '../helpers/pki.js';

let dir: { path: string; remove: () => Promise<void> };
let good: ServingFiles;

beforeAll(async () => {
  dir = await tempDir();
  const ca = await createDevCa({ trustDomain: 'example.org' });
  good = await writeServingFiles(dir.path, await issueSvid(ca, { id: 'spiffe://example.org/db' }), ca.certPem);
});
afterAll(() => dir.remove());

/** A TCP-mode command line; `overrides` replace flags (undefined drops one), `extra` is appended. */
function tcpArgs(overrides: Record<string, string | undefined> = {}, extra: string[] = []): string[] {
  const flags: Record<string, string | undefined> = {
    listen: '127.0.0.1:0',
    protocol: 'tcp',
    upstream: 'tcp://127.0.0.1:5432',
    'mtls-cert-file': good.certFile,
    'mtls-key-file': good.keyFile,
    'mtls-ca-file': good.caFile,
    allow: 'spiffe://example.org/client',
    ...overrides,
  };
  return ['run', ...Object.entries(flags).flatMap(([k, v]) => (v === undefined ? [] : [`--${k}`, v])), ...extra];
}

/** The same for HTTP mode. */
function httpArgs(overrides: Record<string, string | undefined> = {}, extra: string[] = []): string[] {
  return tcpArgs({ protocol: undefined, upstream: 'http://127.0.0.1:8080', ...overrides }, extra);
}

async function expectStartupError(argv: string[], code: string, fragments: string[], env: Record<string, string> = {}) {
  // An error exits at once; a start that should have failed is cut after a few seconds.
  const result = await runCli(argv, env, 8000);
  expect(result.code).toBe(1);
  expect(result.stdout).not.toContain('sidecar started');
  const line = result.stderr.trim();
  expect(line.split('\n')).toHaveLength(1);
  expect(line).toContain(`spiffe-sidecar: ${code}: `);
  for (const fragment of fragments) expect(line).toContain(fragment);
}

/** Starts the CLI, returns its "started" line, and stops it. */
async function startedLine(argv: string[]): Promise<Record<string, unknown>> {
  const running = startCli(argv);
  try {
    return await waitForEvent(running, 'started');
  } finally {
    running.child.kill('SIGKILL');
    await running.exited;
  }
}

describe('protocol flags that cannot work are refused at startup, naming the flag', () => {
  it('sanity: a valid --protocol tcp command line starts and names its upstream', async () => {
    expect(await startedLine(tcpArgs())).toMatchObject({ event: 'started', upstream: 'tcp://127.0.0.1:5432' });
  });

  it('--protocol tcp with --auth-mode jwt', async () => {
    await expectStartupError(tcpArgs({ 'auth-mode': 'jwt', 'jwt-audience': 'orders' }), 'ERR_CONFIG_INVALID', [
      '--protocol tcp',
      '--auth-mode mtls',
    ]);
  });

  it('--protocol tcp with --policy-file', async () => {
    await expectStartupError(
      tcpArgs({ allow: undefined, 'policy-file': `${dir.path}/policy.yaml` }),
      'ERR_CONFIG_INVALID',
      ['--policy-file', '--protocol http'],
    );
  });

  it('--protocol tcp with --api-keys-file', async () => {
    await expectStartupError(
      tcpArgs({ allow: undefined, 'allow-any': undefined, 'api-keys-file': `${dir.path}/keys.yaml` }, ['--allow-any']),
      'ERR_CONFIG_INVALID',
      ['--api-keys-file', '--protocol http'],
    );
  });

  describe('--upstream in TCP mode takes tcp://HOST:PORT or unix:///path only', () => {
    for (const [upstream, fragment] of [
      ['http://127.0.0.1:5432', 'tcp:// or unix://'],
      ['https://127.0.0.1:5432', 'tcp:// or unix://'],
      ['udp://127.0.0.1:5432', 'tcp:// or unix://'],
      ['tcp://127.0.0.1', 'host and port'],
      ['tcp://127.0.0.1:5432/db', 'host and port'],
      ['tcp://user:pw@127.0.0.1:5432', 'host and port'],
      ['tcp://127.0.0.1:99999', 'not a URL'],
      ['tcp://127.0.0.1:0', 'port 0'],
      ['unix:run/app.sock', 'absolute path'],
      ['unix://host/run/app.sock', 'absolute path'],
      ['127.0.0.1:5432', '--upstream'],
    ] as const) {
      it(upstream, async () => {
        await expectStartupError(tcpArgs({ upstream }), 'ERR_CONFIG_INVALID', [`--upstream`, fragment]);
      });
    }

    it('no --upstream at all', async () => {
      await expectStartupError(tcpArgs({ upstream: undefined }), 'ERR_CONFIG_MISSING', [
        '--upstream is required',
        'tcp://',
      ]);
    });
  });

  it('a TCP upstream off loopback without --unsafe-upstream; with it, the sidecar starts', async () => {
    await expectStartupError(tcpArgs({ upstream: 'tcp://10.1.2.3:5432' }), 'ERR_UNSAFE_UPSTREAM', [
      '--upstream tcp://10.1.2.3:5432',
      '--unsafe-upstream',
    ]);
    expect(await startedLine(tcpArgs({ upstream: 'tcp://10.1.2.3:5432' }, ['--unsafe-upstream']))).toMatchObject({
      upstream: 'tcp://10.1.2.3:5432',
    });
  });

  it('the started line writes an IPv6 TCP upstream the way --upstream takes it (tcp://[::1]:5432)', async () => {
    expect(await startedLine(tcpArgs({ upstream: 'tcp://[::1]:5432' }))).toMatchObject({
      upstream: 'tcp://[::1]:5432',
    });
  });

  it('--proxy-protocol v3 (and v1 from the environment)', async () => {
    await expectStartupError(tcpArgs({}, ['--proxy-protocol', 'v3']), 'ERR_CONFIG_INVALID', [
      '--proxy-protocol "v3"',
      'v2',
    ]);
    await expectStartupError(tcpArgs(), 'ERR_CONFIG_INVALID', ['--proxy-protocol "v1"'], {
      SPIFFE_SIDECAR_PROXY_PROTOCOL: 'v1',
    });
  });

  it('--proxy-protocol v2 without --protocol tcp', async () => {
    await expectStartupError(httpArgs({}, ['--proxy-protocol', 'v2']), 'ERR_CONFIG_INVALID', [
      '--proxy-protocol',
      '--protocol tcp',
    ]);
  });

  it('--upstream-protocol h3', async () => {
    await expectStartupError(httpArgs({ 'upstream-protocol': 'h3' }), 'ERR_CONFIG_INVALID', [
      '--upstream-protocol "h3"',
      'h1 or h2c',
    ]);
  });

  it('--upstream-protocol with --protocol tcp', async () => {
    await expectStartupError(tcpArgs({ 'upstream-protocol': 'h2c' }), 'ERR_CONFIG_INVALID', ['--upstream-protocol']);
  });

  it('--protocol udp, and a protocol in the wrong case', async () => {
    await expectStartupError(tcpArgs({ protocol: 'udp' }), 'ERR_CONFIG_INVALID', ['--protocol "udp"', 'http or tcp']);
    await expectStartupError(tcpArgs({ protocol: 'TCP' }), 'ERR_CONFIG_INVALID', ['--protocol "TCP"']);
  });

  describe('outbound tls:// routes', () => {
    const outboundOnly = (route: string) => [
      'run',
      '--outbound',
      route,
      '--mtls-cert-file',
      good.certFile,
      '--mtls-key-file',
      good.keyFile,
      '--mtls-ca-file',
      good.caFile,
    ];

    it('sanity: a valid tls:// route starts', async () => {
      const line = await startedLine(outboundOnly('127.0.0.1:0=tls://127.0.0.1:5432,id=spiffe://example.org/db'));
      expect(line).toMatchObject({ outbound: [{ remote: 'tls://127.0.0.1:5432' }] });
    });

    it('a tls:// remote without a port', async () => {
      await expectStartupError(
        outboundOnly('127.0.0.1:0=tls://db.example.org,id=spiffe://example.org/db'),
        'ERR_CONFIG_INVALID',
        ['--outbound', 'needs a port'],
      );
    });

    it('a tls:// remote without id=', async () => {
      await expectStartupError(outboundOnly('127.0.0.1:0=tls://127.0.0.1:5432'), 'ERR_CONFIG_INVALID', [
        '--outbound',
        'needs id=',
      ]);
    });

    it('a tls:// remote with auth=jwt', async () => {
      await expectStartupError(
        outboundOnly('127.0.0.1:0=tls://127.0.0.1:5432,id=spiffe://example.org/db,auth=jwt,audience=db'),
        'ERR_CONFIG_INVALID',
        ['--outbound', 'always mTLS'],
      );
    });

    it('a tls:// route with no identity to present is refused like an https:// one', async () => {
      const noIdentity = (route: string) => ['run', '--outbound', route];
      // The https:// route: refused, the message names the identity flags.
      await expectStartupError(
        noIdentity('127.0.0.1:0=https://127.0.0.1:8443,id=spiffe://example.org/db'),
        'ERR_CONFIG_MISSING',
        ['--mtls-cert-file'],
      );
      // The tls:// route needs our SVID just as much (it is always mTLS).
      await expectStartupError(
        noIdentity('127.0.0.1:0=tls://127.0.0.1:5432,id=spiffe://example.org/db'),
        'ERR_CONFIG_MISSING',
        ['--mtls-cert-file'],
      );
    });
  });
});
