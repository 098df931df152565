// `npm run demo -- --mode …` as a reader runs it (`node dist/demo.js --mode …`, after the suite's build):
// each mode prints what happened and exits 0 only when every caller got what it should; the default is
// still the mTLS demo. Every process a demo starts is gone when it exits, also when it is interrupted.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DEMO = fileURLToPath(new URL('../../dist/demo.js', import.meta.url));

interface DemoRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Every process the demo started (seen while it ran). */
  children: number[];
}

/** The children of `pid` now, from /proc. */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs the demo; `onChild` is told of each process it starts (as /proc shows it) while it runs. */
function runDemo(args: string[], onChild: (demo: ChildProcess, pid: number) => void = () => {}): Promise<DemoRun> {
  const demo = spawn(process.execPath, [DEMO, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  demo.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  demo.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const children = new Set<number>();
  const watch = setInterval(() => {
    for (const pid of childrenOf(demo.pid as number)) {
      if (children.has(pid)) continue;
      children.add(pid);
      onChild(demo, pid);
    }
  }, 20);
  const limit = setTimeout(() => demo.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    demo.on('close', (code) => {
      clearInterval(watch);
      clearTimeout(limit);
      resolve({ code, stdout, stderr, children: [...children] });
    }),
  );
}

function expectAllStopped(run: DemoRun) {
  expect(run.children.filter(alive), 'processes the demo left running').toEqual([]);
  const dir = /in (\/\S+spiffe-sidecar-demo-\w+)/.exec(run.stdout)?.[1];
  expect(dir, run.stdout).toBeDefined();
  expect(existsSync(dir as string), `${dir} removed`).toBe(false);
}

describe('the demo runs in jwt, outbound and tcp modes', () => {
  it('--mode jwt: JWT-SVID and issuer token admitted, the other caller 403, another audience and no token 401', async () => {
    const run = await runDemo(['--mode', 'jwt']);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/1\. a dev OIDC issuer "dev" on https:\/\/127\.0\.0\.1:\d+/);
    expect(run.stdout).toContain('--auth-mode jwt --jwt-audience orders --jwt-issuer dev=https://127.0.0.1:');
    expect(run.stdout).toContain('HTTP 200 {"app":"orders","x-spiffe-id":"spiffe://example.org/ns/demo/sa/frontend"');
    expect(run.stdout).toContain('HTTP 200 {"app":"orders","x-jwt-issuer":"dev","x-jwt-subject":"ci-job"}');
    expect(run.stdout).toContain('HTTP 403 {"error":"forbidden","reason":"no_matching_rule"}');
    expect(run.stdout).toContain('HTTP 401 {"error":"unauthorized","reason":"ERR_JWT_AUDIENCE"}');
    expect(run.stdout).toContain('HTTP 401 {"error":"unauthorized","reason":"ERR_JWT_MISSING"}');
    expect(run.stdout.match(/"event":"(authz|peer_rejected)"/g)).toHaveLength(5);
    expect(run.stdout).toContain('demo passed');
    expectAllStopped(run);
  });

  it('--mode outbound: two sidecars on one host with their own ports; B sees A, a wrong route is refused', async () => {
    const run = await runDemo(['--mode', 'outbound']);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const admin = [...run.stdout.matchAll(/\(admin port (\d+)/g)].map((m) => m[1]);
    expect(admin).toHaveLength(2);
    expect(admin[0]).not.toBe(admin[1]);
    expect(run.stdout).toMatch(
      /app A calls http:\/\/127\.0\.0\.1:\d+\/orders\/42 in plain HTTP, sending a spoofed x-spiffe-id:\n {3}HTTP 200 \{"app":"orders","x-spiffe-id":"spiffe:\/\/example\.org\/ns\/demo\/sa\/frontend","x-forwarded-client-cert":"By=spiffe:\/\/example\.org\/ns\/demo\/sa\/orders;/,
    );
    expect(run.stdout).toContain('HTTP 502 {"error":"bad_gateway","reason":"remote_identity_mismatch"}');
    expect(run.stdout).toContain('"event":"outbound_rejected"');
    expect(run.stdout).toContain('demo passed');
    expectAllStopped(run);
  });

  it('--mode tcp: the allowed caller’s bytes come back; the denied and certificate-less callers never reach the app', async () => {
    const run = await runDemo(['--mode=tcp']);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('spiffe-sidecar run --protocol tcp');
    expect(run.stdout).toContain('echoed "hello over mTLS"');
    expect(run.stdout).toMatch(
      /not allowed\) sends "hello over mTLS":\n {3}connection closed by the sidecar, nothing echoed/,
    );
    expect(run.stdout).toContain('"decision":"deny"');
    expect(run.stdout).toContain('"reason":"ERR_NO_CLIENT_CERT"');
    expect(run.stdout).toContain('demo passed: the app got one connection');
    expectAllStopped(run);
  });

  it('without --mode it is the mTLS demo, as before', async () => {
    const run = await runDemo([]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('3. the sidecar in front of it on https://127.0.0.1:');
    expect(run.stdout).toContain('caller without a client certificate:');
    expect(run.stdout).toContain('demo passed: the app saw only the verified caller.');
    expect(run.children.filter(alive)).toEqual([]);
  });

  it('interrupted while its sidecars start, it stops them, removes its files and exits 1', async () => {
    let interrupted = false;
    const run = await runDemo(['--mode', 'outbound'], (demo) => {
      if (interrupted) return;
      interrupted = true;
      demo.kill('SIGTERM');
    });
    expect(interrupted).toBe(true);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('demo interrupted (SIGTERM): stopping what it started');
    expect(run.stdout).not.toContain('demo passed');
    expectAllStopped(run);
  });

  it('an unknown mode is refused with the list of modes', async () => {
    const run = await runDemo(['--mode', 'grpc']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('--mode "grpc": usage: npm run demo [-- --mode mtls|jwt|outbound|tcp]');
    expect(run.stdout).toBe('');
  });
});
