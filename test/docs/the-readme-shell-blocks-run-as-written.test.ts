// Every `sh` block of the README is either run here, as written, or skipped for a stated reason (it needs a
// cluster, a SPIRE agent, or is a sketch with `...`): a new block fails this test until it is classified, so
// the README cannot drift from what the commands do.
//
// A block runs in bash in a fresh directory (with `dist/` and `examples/` linked from the repository, so
// `node $PWD/dist/main.js` and the example paths resolve as in a checkout), with three documented changes:
// `npm ci && npm run build` is left out (the suite's global setup built `dist/`), the quick start's alias
// `spiffe-sidecar` is in force in every block (as for a reader who followed it), and a server line
// (`spiffe-sidecar run`, `dev issuer`, `dev workload-api`) is started in the background and waited for (its
// `started` log line, or `serving until`) instead of holding the shell. Where a block says the app listens on 127.0.0.1:8080, an echo app listens there.
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readme } from '../helpers/readme.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface ShellBlock {
  /** `Heading #n`: the n-th sh block under the nearest heading. */
  key: string;
  text: string;
}

function shellBlocks(markdown: string): ShellBlock[] {
  const blocks: ShellBlock[] = [];
  const perHeading = new Map<string, number>();
  let heading = '(top)';
  let inBlock: { lang: string; lines: string[] } | undefined;
  for (const line of markdown.split('\n')) {
    if (inBlock) {
      if (line.startsWith('```')) {
        if (inBlock.lang === 'sh') {
          const n = (perHeading.get(heading) ?? 0) + 1;
          perHeading.set(heading, n);
          blocks.push({ key: `${heading} #${n}`, text: inBlock.lines.join('\n') });
        }
        inBlock = undefined;
      } else inBlock.lines.push(line);
      continue;
    }
    const fence = /^```(\S*)/.exec(line);
    if (fence) inBlock = { lang: fence[1], lines: [] };
    else if (/^#{2,4} /.test(line)) heading = line.replace(/^#+ /, '');
  }
  return blocks;
}

type Plan = { run: true; app8080?: boolean; expect?: (output: string) => void } | { skip: string };

const PLAN: Record<string, Plan> = {
  'Set-up: two commands #1': { skip: '`npm ci && npm run demo` runs in .ci/run; `npm test` is this suite' },
  'Quick start (file mode) #1': {
    run: true,
    app8080: true,
    expect: (output) => expect(output).toContain('"x-spiffe-id":"spiffe://example.org/ns/prod/sa/frontend"'),
  },
  'Quick start (SPIRE mode) #1': {
    run: true,
    app8080: true,
    expect: (output) => expect(output).toContain('"x-spiffe-id":"spiffe://example.org/ns/prod/sa/frontend"'),
  },
  'Quick start (SPIRE mode) #2': { skip: 'needs a SPIRE server' },
  'JWT mode #1': {
    run: true,
    app8080: true,
    expect: (output) => expect(output).toContain('"x-spiffe-id":"spiffe://example.org/ns/prod/sa/frontend"'),
  },
  'JWT mode #2': {
    run: true,
    app8080: true,
    expect: (output) => {
      expect(output).toContain('"x-jwt-issuer":"dev","x-jwt-subject":"ci-job"');
      expect(output).toContain('"x-spiffe-id":"spiffe://example.org/ns/prod/sa/frontend"');
    },
  },
  'Outbound: two services #1': {
    run: true,
    app8080: true,
    expect: (output) => expect(output).toContain('"x-spiffe-id":"spiffe://example.org/ns/shop/sa/frontend"'),
  },
  'Kubernetes quick start #1': { skip: 'needs a Kubernetes cluster' },
  'Kubernetes quick start #2': { skip: 'needs a Kubernetes cluster' },
  'Kubernetes quick start #3': { skip: 'needs a Kubernetes cluster' },
  'Kubernetes quick start #4': { skip: 'needs a Kubernetes cluster' },
  'Rate limits across replicas #1': { skip: 'a sketch of the flags (`...`); tested end to end with redis-server' },
  'Outbound routes with OAuth access tokens #1': {
    skip: 'route forms against a real IdP; each way runs against a local token endpoint in test/e2e/outbound-*',
  },
  'Worked example: Keycloak token exchange #1': {
    skip: 'needs SPIRE and Keycloak; the same exchange runs in test/e2e/outbound-token-exchange-routes-trade-the-callers-token-for-one-the-remote-accepts.test.ts',
  },
  'Worked example: Keycloak token exchange #2': {
    skip: 'what the sidecar sends Keycloak, as curl would: needs Keycloak',
  },
  'A worker that sends its service-account token #1': {
    skip: 'needs a Kubernetes cluster and SPIRE; the server side runs in test/e2e/one-port-admits-certificates-jwt-svids-oidc-service-accounts-and-api-keys-each-to-its-routes.test.ts',
  },
  'One port, every caller #1': {
    skip: 'needs a SPIRE agent, Keycloak, GitHub and a Kubernetes API server; the same shape runs with local stand-ins in test/e2e/one-port-admits-certificates-jwt-svids-oidc-service-accounts-and-api-keys-each-to-its-routes.test.ts',
  },
  'policy check #1': {
    run: true,
    expect: (output) => expect(output.trim().split('\n')).toEqual(['allow', 'rule: managers-delete-sandboxes']),
  },
};

/** Continuation lines joined, so that one command is one line. */
function joinContinuations(text: string): string[] {
  return text.replace(/\\\n\s*/g, '').split('\n');
}

/** The block as the test runs it (see the header comment for the three changes). */
function script(text: string): string {
  const lines = [
    'set -euo pipefail',
    'shopt -s expand_aliases',
    'alias spiffe-sidecar="node $PWD/dist/main.js"',
    // The servers are stopped, and waited for, so that the next block finds the ports free.
    "trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT",
  ];
  let background = 0;
  for (const line of joinContinuations(text)) {
    if (/^\s*npm ci && npm run build\s*$/.test(line)) continue;
    // Servers hold their terminal: started in the background, and waited for until they say they serve.
    const server = /^\s*spiffe-sidecar (run|dev issuer|dev workload-api)\b/.exec(line);
    if (server) {
      const ready = server[1] === 'run' ? '"event":"started"' : 'serving until';
      const log = `.server-${++background}.log`;
      lines.push(
        `${line} > ${log} 2>&1 &`,
        `for _ in $(seq 300); do grep -q '${ready}' ${log} && break; kill -0 $! 2>/dev/null || { cat ${log}; exit 1; }; sleep 0.05; done`,
        `grep -q '${ready}' ${log} || { echo 'not ready'; cat ${log}; exit 1; }`,
      );
      continue;
    }
    lines.push(line);
  }
  return `${lines.join('\n')}\n`;
}

function runBash(source: string, cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', source], { cwd, env: { ...process.env, PWD: cwd } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('close', (code) => resolve({ code, output }));
  });
}

const blocks = shellBlocks(readme);

describe('the README shell blocks run as written', () => {
  // The README's app on 127.0.0.1:8080: it answers with the headers it received.
  let app: Server | undefined;
  beforeAll(async () => {
    const needed = blocks.some((b) => {
      const plan = PLAN[b.key];
      return plan !== undefined && 'run' in plan && plan.app8080 === true;
    });
    if (!needed) return;
    const server = createServer((req, res) => res.end(JSON.stringify(req.headers)));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`the README's app needs 127.0.0.1:8080: ${err.message}`)));
      server.listen(8080, '127.0.0.1', () => resolve());
    });
    app = server;
  });
  afterAll(() => new Promise<void>((resolve) => (app ? app.close(() => resolve()) : resolve())));

  it('every sh block is classified: run here, or skipped with a reason', () => {
    expect(blocks.map((b) => b.key).filter((k) => !(k in PLAN))).toEqual([]);
    expect(Object.keys(PLAN).filter((k) => !blocks.some((b) => b.key === k))).toEqual([]);
  });

  for (const block of blocks) {
    const plan = PLAN[block.key];
    if (!plan || !('run' in plan)) continue;
    it(`runs: ${block.key}`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'readme-block-'));
      try {
        await symlink(join(REPO, 'dist'), join(dir, 'dist'));
        await symlink(join(REPO, 'examples'), join(dir, 'examples'));
        const { code, output } = await runBash(script(block.text), dir);
        expect(code, output).toBe(0);
        plan.expect?.(output);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
