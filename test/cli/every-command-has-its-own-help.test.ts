// Issue 21: every command answers --help (and -h) with its own text and exit 0: its usage line, only its own
// flags with the defaults of the one table, and an example; `spiffe-sidecar --help` is a short overview.
// The help runs in the real process (what a new user types); what it lists is checked against the tables.
import { describe, expect, it } from 'vitest';
import {
  APIKEY_NEW_OPTIONS,
  CERTS_INIT_OPTIONS,
  CERTS_ISSUE_OPTIONS,
  helpText,
  type OptionSpec,
  POLICY_CHECK_OPTIONS,
  RUN_FLAG_GROUPS,
} from '../../src/cli.js';
import { buildConfig, OUTBOUND_FORMS } from '../../src/config.js';
import { RUN_OPTIONS } from '../../src/config/run-options.js';
import { devHelpText } from '../../src/dev/commands.js';
import { INJECT_WEBHOOK_OPTIONS } from '../../src/webhook/options.js';
import { type Finished, runCli } from '../helpers/process.js';

/** Runs a few CLIs at a time: a dozen node processes at once would crowd two cores. */
async function runAll(commands: readonly string[][]): Promise<Finished[]> {
  const results: Finished[] = [];
  for (let i = 0; i < commands.length; i += 4)
    results.push(...(await Promise.all(commands.slice(i, i + 4).map((args) => runCli(args)))));
  return results;
}

/** The flags a help lists in its flag column (`  --name …` at the start of a line). */
function listedFlags(help: string): string[] {
  return [...help.matchAll(/^ {2}--([a-z0-9-]+)/gm)].map((m) => m[1]).sort();
}

const LEAVES: [command: string, specs: Readonly<Record<string, OptionSpec>>, usage: RegExp][] = [
  ['run', RUN_OPTIONS, /^Usage:\n {2}spiffe-sidecar \[run\] \[flags\]$/m],
  ['certs init', CERTS_INIT_OPTIONS, /^Usage:\n {2}spiffe-sidecar certs init --trust-domain TD --out DIR \[flags\]$/m],
  ['certs issue', CERTS_ISSUE_OPTIONS, /^Usage:\n {2}spiffe-sidecar certs issue --id SPIFFE_ID --ca DIR --out DIR/m],
  ['policy check', POLICY_CHECK_OPTIONS, /^Usage:\n {2}spiffe-sidecar policy check --policy-file FILE/m],
  ['apikey new', APIKEY_NEW_OPTIONS, /^Usage:\n {2}spiffe-sidecar apikey new --name NAME \[flags\]$/m],
  ['inject-webhook', INJECT_WEBHOOK_OPTIONS, /^Usage:\n {2}spiffe-sidecar inject-webhook --tls-cert-file FILE/m],
];

describe('every command has its own --help', () => {
  it('each command: exit 0, its usage, exactly its own flags with their defaults, an example; -h is the same', async () => {
    const commands = LEAVES.flatMap(([command]) => [
      [...command.split(' '), '--help'],
      [...command.split(' '), '-h'],
    ]);
    const results = await runAll(commands);
    for (const [i, [command, specs, usage]] of LEAVES.entries()) {
      const [long, short] = [results[2 * i], results[2 * i + 1]];
      expect({ code: long.code, stderr: long.stderr }, command).toEqual({ code: 0, stderr: '' });
      expect(short, `${command} -h`).toEqual(long);
      const help = long.stdout;
      expect(help, command).toBe(helpText(command as Parameters<typeof helpText>[0]));
      expect(help.startsWith(`spiffe-sidecar ${command}: `), command).toBe(true);
      expect(help, command).toMatch(usage);
      expect(listedFlags(help), command).toEqual(Object.keys(specs).sort());
      expect(help, command).toMatch(/^ {2}-h, --help +this help$/m);
      expect(help, command).toMatch(new RegExp(`^Examples?:\\n( {2}#.*\\n)? {2}spiffe-sidecar ${command} `, 'm'));
    }
  });

  it('the help flag works anywhere among the flags, and `help COMMAND` prints the same', async () => {
    const [middle, afterBad, viaHelp, runDefault] = await runAll([
      ['certs', 'issue', '--ca', 'dev-ca', '--help', '--out', 'x'],
      ['policy', 'check', '--no-such-flag', '-h'],
      ['help', 'certs', 'issue'],
      ['--upstream', 'http://127.0.0.1:1', '--help'],
    ]);
    expect(middle).toMatchObject({ code: 0, stdout: helpText('certs issue'), stderr: '' });
    expect(afterBad).toMatchObject({ code: 0, stdout: helpText('policy check'), stderr: '' });
    expect(viaHelp).toMatchObject({ code: 0, stdout: helpText('certs issue'), stderr: '' });
    expect(runDefault).toMatchObject({ code: 0, stdout: helpText('run'), stderr: '' });
  });

  it('the overview is short: one line per command, and how to get more', async () => {
    const [long, short, word] = await runAll([['--help'], ['-h'], ['help']]);
    expect({ code: long.code, stderr: long.stderr }).toEqual({ code: 0, stderr: '' });
    expect(short).toEqual(long);
    expect(word).toEqual(long);
    const help = long.stdout;
    expect(help).toBe(helpText());
    expect(help.split('\n').length).toBeLessThan(30);
    expect(help).toMatch(/^Usage:\n {2}spiffe-sidecar COMMAND \[flags\]$/m);
    for (const command of ['run', 'certs init', 'certs issue', 'policy check', 'apikey new', 'inject-webhook', 'dev'])
      expect(help).toMatch(new RegExp(`^ {2}${command} +\\S`, 'm'));
    expect(help).toContain('spiffe-sidecar COMMAND --help');
    expect(help).toContain("'spiffe-sidecar run --help'");
    expect(listedFlags(help)).toEqual([]);
  });

  it('certs, policy and apikey alone, or with --help, list their commands', async () => {
    const groups = ['certs', 'policy', 'apikey'] as const;
    const results = await runAll(groups.flatMap((g) => [[g], [g, '--help'], [g, '-h']]));
    for (const [i, group] of groups.entries()) {
      const [alone, long, short] = results.slice(3 * i, 3 * i + 3);
      expect({ code: long.code, stderr: long.stderr }, group).toEqual({ code: 0, stderr: '' });
      expect(short, group).toEqual(long);
      expect(alone, group).toEqual(long);
      expect(long.stdout, group).toBe(helpText(group));
      expect(long.stdout, group).toMatch(new RegExp(`^Usage:\\n {2}spiffe-sidecar ${group} \\w+ \\[flags\\]$`, 'm'));
      expect(long.stdout, group).toMatch(new RegExp(`^Examples?:\\n {2}spiffe-sidecar ${group} \\w+ --`, 'm'));
      expect(long.stdout, group).toContain(`'spiffe-sidecar ${group} COMMAND --help'`);
      expect(listedFlags(long.stdout), group).toEqual([]);
    }
  });

  it('dev alone, dev --help and dev -h print the dev commands help', async () => {
    const results = await runAll([['dev'], ['dev', '--help'], ['dev', '-h'], ['help', 'dev']]);
    for (const result of results) expect(result).toEqual({ code: 0, signal: null, stdout: devHelpText(), stderr: '' });
  });
});

describe('run --help', () => {
  it('lists every flag of run once, in its groups', () => {
    const grouped = RUN_FLAG_GROUPS.flatMap(([, flags]) => flags);
    expect([...grouped].sort()).toEqual(Object.keys(RUN_OPTIONS).sort());
    expect(new Set(grouped).size).toBe(grouped.length);
    const help = helpText('run');
    for (const flag of Object.keys(RUN_OPTIONS))
      expect(help.match(new RegExp(`^ {2}--${flag}[ \\n]`, 'gm')), flag).toHaveLength(1);
  });

  it('documents every form of --outbound, protocol=h2 and tls:// among them, and each form is accepted', () => {
    const help = helpText('run');
    for (const [form, meaning] of OUTBOUND_FORMS) {
      expect(help).toContain(form);
      expect(help).toContain(meaning);
    }
    expect(help).toContain(',protocol=h2');
    expect(help).toContain('=tls://HOST:PORT,id=RULE');
    // Each form, filled in (with and without its optional part), is a route buildConfig accepts.
    const fill = (form: string) =>
      form
        .replace('LISTEN', '127.0.0.1:15001')
        .replace('HOST:PORT', 'orders.example:8443')
        .replace(':PORT', ':8080')
        .replace('RULE', 'spiffe://example.org/ns/shop/sa/orders')
        .replace('AUD', 'orders')
        .replace('PATH', '/var/run/tokens/orders')
        .replace('token-endpoint=URL', 'token-endpoint=https://keycloak.example/token')
        .replace('client-id=ID', 'client-id=sidecar')
        .replace('resource=URI', 'resource=https://orders.example');
    // auth=forward passes on a token this sidecar verified: it needs an inbound listener that verifies tokens.
    const verifying = {
      upstream: 'http://127.0.0.1:8080',
      'allow-any': true,
      'jwt-audience': ['orders'],
      'jwt-issuer': ['keycloak=https://keycloak.example'],
    };
    for (const [form] of OUTBOUND_FORMS) {
      for (const route of [fill(form.replace(/\[([^\]]*)\]/g, '$1')), fill(form.replace(/\[[^\]]*\]/g, ''))]) {
        expect(() =>
          buildConfig({
            outbound: [route],
            'workload-api-socket': 'unix:///run/spire/sockets/agent.sock',
            ...(route.includes('auth=forward') ? verifying : {}),
          }),
        ).not.toThrow();
      }
    }
  });

  it('shows the default of --k8s-api-server from the table (what the code sends TokenReview to)', () => {
    expect(helpText('run')).toMatch(/^ {2}--k8s-api-server URL +.*\(default https:\/\/kubernetes\.default\.svc\)$/m);
  });
});
