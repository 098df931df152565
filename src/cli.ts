// Command line and environment → raw options. The only reader of process.env: every `run` flag can also
// be set as SPIFFE_SIDECAR_<FLAG> (upper case, dashes as underscores; lists comma-separated), and a
// flag on the command line wins over the environment.
import type { RawOptions } from './config.js';
import { INJECT_WEBHOOK_DEFAULTS, RUN_DEFAULTS } from './config/defaults.js';
import { describeOptions, type OptionSpec, parseOptions } from './config/option-spec.js';
import { RUN_OPTIONS } from './config/run-options.js';
import { readConfigFile } from './config-file.js';
import { SidecarError } from './errors.js';
import { INJECT_WEBHOOK_OPTIONS } from './webhook/options.js';

export type { OptionSpec } from './config/option-spec.js';
export { RUN_OPTIONS } from './config/run-options.js';

export const CERTS_INIT_OPTIONS: Record<string, OptionSpec> = {
  'trust-domain': { type: 'string', value: 'TD', help: 'trust domain name, e.g. example.org' },
  out: { type: 'string', value: 'DIR', help: 'directory for ca.crt and ca.key' },
  lifetime: { type: 'string', value: 'DURATION', help: 'CA lifetime (default 365d)' },
};

export const CERTS_ISSUE_OPTIONS: Record<string, OptionSpec> = {
  id: { type: 'string', value: 'SPIFFE_ID', help: "the SVID's SPIFFE ID, e.g. spiffe://example.org/web" },
  ca: { type: 'string', value: 'DIR', help: 'directory made by certs init' },
  out: { type: 'string', value: 'DIR', help: 'directory for tls.crt, tls.key and ca.crt' },
  lifetime: { type: 'string', value: 'DURATION', help: 'SVID lifetime (default 1h)' },
};

export const POLICY_CHECK_OPTIONS: Record<string, OptionSpec> = {
  'policy-file': { type: 'string', value: 'FILE', help: 'the policy file to evaluate' },
  id: { type: 'string', value: 'SPIFFE_ID', help: "the caller's SPIFFE ID" },
  issuer: { type: 'string', value: 'NAME', help: "the token's issuer name (JWT callers)" },
  claims: { type: 'string', value: 'JSON', help: "the token's claims, a JSON object (JWT callers)" },
  'api-key': { type: 'string', value: 'NAME', help: 'the caller is the API key with this name' },
};

export const APIKEY_NEW_OPTIONS: Record<string, OptionSpec> = {
  name: { type: 'string', value: 'NAME', help: 'identity name the key authenticates as (used in policy rules)' },
  expires: { type: 'string', value: 'DURATION|DATE', help: 'expiry: a duration from now (90d) or an ISO date' },
  route: {
    type: 'string',
    multiple: true,
    value: 'METHOD:PATH',
    help: 'only these routes, e.g. POST:/invoke (repeatable; glob paths)',
  },
};

export type Command =
  | { command: 'run'; options: RawOptions }
  | { command: 'certs-init'; options: Record<string, string | undefined> }
  | { command: 'certs-issue'; options: Record<string, string | undefined> }
  | { command: 'inject-webhook'; options: Record<string, string | boolean | string[] | undefined> }
  | {
      command: 'policy-check';
      options: Record<string, string | undefined>;
      /** Both absent: only validate the file and print its warnings. */
      method: string | undefined;
      path: string | undefined;
    }
  | { command: 'apikey-new'; options: Record<string, string | string[] | undefined> }
  | { command: 'help' }
  | { command: 'version' };

export function envName(flag: string): string {
  return `SPIFFE_SIDECAR_${flag.toUpperCase().replaceAll('-', '_')}`;
}

function parseFlags(args: string[], specs: Record<string, OptionSpec>, usage: string) {
  return parseOptions(args, specs, usage).values;
}

function envBoolean(name: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new SidecarError('ERR_CONFIG_INVALID', `${name}=${JSON.stringify(value)}: expected true or false`);
}

/** Fills options the command line left unset from SPIFFE_SIDECAR_* variables. */
function withEnv(values: Record<string, unknown>, env: NodeJS.ProcessEnv): RawOptions {
  const out: Record<string, unknown> = { ...values };
  for (const [flag, spec] of Object.entries(RUN_OPTIONS)) {
    const name = envName(flag);
    const value = env[name];
    if (out[flag] !== undefined || value === undefined || value === '') continue;
    if (spec.type === 'boolean') out[flag] = envBoolean(name, value);
    else if (spec.multiple)
      out[flag] = value
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
    else out[flag] = value;
  }
  // The Workload Endpoint spec's variable, read as-is: the default socket for SPIRE mode.
  if (env.SPIFFE_ENDPOINT_SOCKET) out.spiffeEndpointSocket = env.SPIFFE_ENDPOINT_SOCKET;
  return out as RawOptions;
}

/** Parses argv (without `node` and the script) into a command. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): Command {
  const [first, second] = argv;
  if (first === '--help' || first === '-h' || first === 'help') return { command: 'help' };
  if (first === '--version' || first === 'version') return { command: 'version' };
  if (first === 'certs') {
    if (second === 'init' || second === 'issue') {
      const rest = argv.slice(2);
      if (rest.includes('--help')) return { command: 'help' };
      const specs = second === 'init' ? CERTS_INIT_OPTIONS : CERTS_ISSUE_OPTIONS;
      const values = parseFlags(rest, specs, `spiffe-sidecar certs ${second}`);
      return { command: second === 'init' ? 'certs-init' : 'certs-issue', options: values as Record<string, string> };
    }
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `unknown command 'certs ${second ?? ''}'; use 'certs init' or 'certs issue'`,
    );
  }
  if (first === 'inject-webhook') {
    const rest = argv.slice(1);
    if (rest.includes('--help')) return { command: 'help' };
    return {
      command: 'inject-webhook',
      options: parseFlags(rest, INJECT_WEBHOOK_OPTIONS, 'spiffe-sidecar inject-webhook'),
    };
  }
  if (first === 'policy' && second === 'check') {
    const rest = argv.slice(2);
    if (rest.includes('--help')) return { command: 'help' };
    const usage = 'spiffe-sidecar policy check';
    const parsed = parseOptions(rest, POLICY_CHECK_OPTIONS, usage, true);
    if (parsed.positionals.length !== 2 && parsed.positionals.length !== 0)
      throw new SidecarError(
        'ERR_CONFIG_INVALID',
        `${usage}: expected METHOD PATH after the flags, e.g. GET /health (or neither, to only check the file)`,
      );
    const [method, path] = parsed.positionals as [string?, string?];
    return { command: 'policy-check', options: parsed.values as Record<string, string>, method, path };
  }
  if (first === 'apikey' && second === 'new') {
    const rest = argv.slice(2);
    if (rest.includes('--help')) return { command: 'help' };
    return {
      command: 'apikey-new',
      options: parseFlags(rest, APIKEY_NEW_OPTIONS, 'spiffe-sidecar apikey new') as Record<string, string | string[]>,
    };
  }
  if (first === 'policy' || first === 'apikey')
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `unknown command '${first} ${second ?? ''}'; use 'policy check' or 'apikey new'`,
    );
  const args = first === 'run' ? argv.slice(1) : argv;
  if (args.includes('--help') || args.includes('-h')) return { command: 'help' };
  if (args[0] !== undefined && !args[0].startsWith('-')) {
    throw new SidecarError('ERR_CONFIG_INVALID', `unknown command '${args[0]}'; see 'spiffe-sidecar --help'`);
  }
  const options = withEnv(parseFlags(args, RUN_OPTIONS, 'spiffe-sidecar run'), env);
  if (!options.config) return { command: 'run', options };
  // Precedence: flags, then the environment, then the file, then the defaults.
  const file = readConfigFile(options.config, RUN_OPTIONS);
  const merged: Record<string, unknown> = { ...file };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) merged[key] = value;
  return { command: 'run', options: merged as RawOptions };
}

export function helpText(): string {
  return `spiffe-sidecar: a SPIFFE mTLS sidecar proxy

Usage:
  spiffe-sidecar [run] [flags]       terminate mTLS, verify and authorize peers, forward to the app
  spiffe-sidecar certs init [flags]  create a development CA for a trust domain
  spiffe-sidecar certs issue [flags] issue an X509-SVID from a development CA
  spiffe-sidecar policy check [flags] [METHOD PATH]
                                     print the decision of a policy file and the rule that made it, and
                                     warnings about deny rules another spelling of a path escapes
  spiffe-sidecar apikey new [flags]  make an API key: prints the key once and the line for --api-keys-file
  spiffe-sidecar inject-webhook [flags]
                                     Kubernetes admission webhook that injects the sidecar into pods

run flags (each also as ${envName('<flag>')}, e.g. ${envName('allow')}):
${describeOptions(RUN_OPTIONS, RUN_DEFAULTS)}

certs init flags:
${describeOptions(CERTS_INIT_OPTIONS)}

certs issue flags:
${describeOptions(CERTS_ISSUE_OPTIONS)}

policy check flags:
${describeOptions(POLICY_CHECK_OPTIONS)}

apikey new flags:
${describeOptions(APIKEY_NEW_OPTIONS)}

inject-webhook flags:
${describeOptions(INJECT_WEBHOOK_OPTIONS, INJECT_WEBHOOK_DEFAULTS)}
`;
}
