// Command line and environment → a command with raw options, and every command's `--help`. The only
// reader of process.env: every `run` flag can also be set as SPIFFE_SIDECAR_<FLAG> (upper case, dashes as
// underscores; lists comma-separated), and a flag on the command line wins over the environment.
// `--help` (or `-h`) anywhere in a command's arguments prints that command's help: its usage, its own
// flags with their defaults (from the one table, config/defaults.ts) and an example.
import { OUTBOUND_FORMS, type RawOptions } from './config.js';
import {
  APIKEY_NEW_DEFAULTS,
  CERTS_INIT_DEFAULTS,
  CERTS_ISSUE_DEFAULTS,
  type FlagDefault,
  INJECT_WEBHOOK_DEFAULTS,
  POLICY_CHECK_DEFAULTS,
  RUN_DEFAULTS,
} from './config/defaults.js';
import {
  describeOptions,
  didYouMean,
  helpLine,
  type OptionSpec,
  type OtherCommands,
  parseOptions,
} from './config/option-spec.js';
import { RUN_OPTIONS, type RunFlag } from './config/run-options.js';
import { readConfigFile } from './config-file.js';
import { SidecarError } from './errors.js';
import { INJECT_WEBHOOK_OPTIONS } from './webhook/options.js';

export type { OptionSpec } from './config/option-spec.js';
export { RUN_OPTIONS } from './config/run-options.js';

export const CERTS_INIT_OPTIONS: Readonly<Record<keyof typeof CERTS_INIT_DEFAULTS, OptionSpec>> = {
  'trust-domain': { type: 'string', value: 'TD', help: 'trust domain name, e.g. example.org' },
  out: { type: 'string', value: 'DIR', help: 'directory for ca.crt and ca.key (made if missing)' },
  lifetime: { type: 'string', value: 'DURATION', help: 'how long the CA is valid, e.g. 30d' },
  force: {
    type: 'boolean',
    help: 'replace an existing ca.crt and ca.key (the SVIDs of the old CA stop verifying)',
  },
};

export const CERTS_ISSUE_OPTIONS: Readonly<Record<keyof typeof CERTS_ISSUE_DEFAULTS, OptionSpec>> = {
  id: { type: 'string', value: 'SPIFFE_ID', help: "the SVID's SPIFFE ID, e.g. spiffe://example.org/ns/prod/sa/web" },
  ca: { type: 'string', value: 'DIR', help: 'the directory certs init made (ca.crt, ca.key)' },
  out: { type: 'string', value: 'DIR', help: 'directory for tls.crt, tls.key and ca.crt (made if missing)' },
  lifetime: {
    type: 'string',
    value: 'DURATION',
    help: 'how long the SVID is valid, e.g. 24h; at most as long as the CA',
  },
  force: { type: 'boolean', help: 'replace existing tls.crt, tls.key and ca.crt in --out' },
};

export const POLICY_CHECK_OPTIONS: Readonly<Record<keyof typeof POLICY_CHECK_DEFAULTS, OptionSpec>> = {
  'policy-file': { type: 'string', value: 'FILE', help: 'the policy file to evaluate (YAML or JSON)' },
  id: { type: 'string', value: 'SPIFFE_ID', help: "the caller's SPIFFE ID (an mTLS caller, or a JWT-SVID's sub)" },
  issuer: { type: 'string', value: 'NAME', help: "the token's issuer name, as in --jwt-issuer NAME=URL (JWT callers)" },
  claims: { type: 'string', value: 'JSON', help: "the token's claims, a JSON object (JWT callers)" },
  'api-key': { type: 'string', value: 'NAME', help: 'the caller is the API key with this name' },
};

export const APIKEY_NEW_OPTIONS: Readonly<Record<keyof typeof APIKEY_NEW_DEFAULTS, OptionSpec>> = {
  name: { type: 'string', value: 'NAME', help: 'identity name the key authenticates as (used in policy rules)' },
  expires: { type: 'string', value: 'DURATION|DATE', help: 'expiry: a duration from now (90d) or an ISO date' },
  route: {
    type: 'string',
    multiple: true,
    value: 'METHOD:PATH',
    help: 'only these routes, e.g. POST:/invoke (repeatable; glob paths)',
  },
  prefix: { type: 'string', value: 'PREFIX', help: 'what the key starts with (as --api-key-prefix), e.g. gak_' },
};

/** Every command's flag table: an unknown flag that belongs to another command is named as such. */
const FLAG_TABLES: OtherCommands = {
  run: RUN_OPTIONS,
  'certs init': CERTS_INIT_OPTIONS,
  'certs issue': CERTS_ISSUE_OPTIONS,
  'policy check': POLICY_CHECK_OPTIONS,
  'apikey new': APIKEY_NEW_OPTIONS,
  'inject-webhook': INJECT_WEBHOOK_OPTIONS,
};

/** The commands made of two words, by their first. */
const GROUPS = { certs: ['init', 'issue'], policy: ['check'], apikey: ['new'] } as const;
type Group = keyof typeof GROUPS;

/** What `--help` can be asked about: the overview, a command, or a group of commands. */
export type HelpTopic =
  | 'overview'
  | 'run'
  | 'certs'
  | 'certs init'
  | 'certs issue'
  | 'policy'
  | 'policy check'
  | 'apikey'
  | 'apikey new'
  | 'inject-webhook'
  | 'dev';

export type Command =
  | { command: 'run'; options: RawOptions }
  | { command: 'certs-init'; options: Record<string, string | boolean | undefined> }
  | { command: 'certs-issue'; options: Record<string, string | boolean | undefined> }
  | { command: 'inject-webhook'; options: Record<string, string | boolean | string[] | undefined> }
  | {
      command: 'policy-check';
      options: Record<string, string | undefined>;
      /** Both absent: only validate the file and print its warnings. */
      method: string | undefined;
      path: string | undefined;
    }
  | { command: 'apikey-new'; options: Record<string, string | string[] | undefined> }
  /** `dev …`: the arguments after `dev`, for src/dev/commands.ts (never empty, never a help request). */
  | { command: 'dev'; argv: string[] }
  | { command: 'help'; topic: HelpTopic }
  | { command: 'version' };

export function envName(flag: string): string {
  return `SPIFFE_SIDECAR_${flag.toUpperCase().replaceAll('-', '_')}`;
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

const HELP_FLAGS: readonly string[] = ['--help', '-h'];

/** `--help` or `-h` among a command's arguments (before a `--`, after which everything is a value). */
function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((a) => HELP_FLAGS.includes(a));
}

const COMMAND_NAMES = ['run', 'certs', 'policy', 'apikey', 'inject-webhook', 'dev', 'help', 'version'];

/** `words` is no command: say what might be meant, or which commands there are. */
function unknownCommand(words: string, suggestion: string | undefined, group?: Group): never {
  const known = group ? GROUPS[group].map((s) => `${group} ${s}`) : COMMAND_NAMES.slice(0, 6);
  const list = known.length > 1 ? `the commands are ${known.join(', ')}` : `the command is ${known[0]}`;
  const hint = suggestion ? ` (did you mean '${suggestion}'?)` : `: ${list}`;
  const see = `spiffe-sidecar ${group ? `${group} ` : ''}--help`;
  throw new SidecarError('ERR_CONFIG_INVALID', `unknown command '${words}'${hint}; see '${see}'`);
}

/** `help [COMMAND [SUBCOMMAND]]`: the help topic those words name. */
function helpTopicOf(words: readonly string[]): HelpTopic {
  if (words.length === 0) return 'overview';
  const [first, second] = words;
  if (first === 'run' || first === 'inject-webhook' || first === 'dev') return first;
  if (Object.hasOwn(GROUPS, first)) {
    if (second === undefined) return first as Group;
    if ((GROUPS[first as Group] as readonly string[]).includes(second)) return `${first} ${second}` as HelpTopic;
    return unknownCommand(`${first} ${second}`, undefined, first as Group);
  }
  return unknownCommand(first, didYouMean(first, COMMAND_NAMES));
}

/** `certs`, `policy`, `apikey`: the word after it names the command. */
function parseGroup(group: Group, argv: string[]): Command {
  const sub = argv[1];
  if (sub === undefined || HELP_FLAGS.includes(sub)) return { command: 'help', topic: group };
  const subs: readonly string[] = GROUPS[group];
  const name = `${group} ${sub}`;
  if (!subs.includes(sub)) {
    const list = subs.map((s) => `'${group} ${s}'`).join(' or ');
    if (sub.startsWith('-'))
      throw new SidecarError(
        'ERR_CONFIG_INVALID',
        `'${group}' needs a command before its flags: ${list}; see 'spiffe-sidecar ${group} --help'`,
      );
    const near = didYouMean(sub, subs);
    return unknownCommand(name, near ? `${group} ${near}` : undefined, group);
  }
  const rest = argv.slice(2);
  if (wantsHelp(rest)) return { command: 'help', topic: name as HelpTopic };
  const usage = `spiffe-sidecar ${name}`;
  switch (name) {
    case 'certs init':
    case 'certs issue': {
      const specs = sub === 'init' ? CERTS_INIT_OPTIONS : CERTS_ISSUE_OPTIONS;
      const { values } = parseOptions(rest, specs, usage, false, FLAG_TABLES);
      return {
        command: sub === 'init' ? 'certs-init' : 'certs-issue',
        options: values as Record<string, string | boolean>,
      };
    }
    case 'policy check': {
      const parsed = parseOptions(rest, POLICY_CHECK_OPTIONS, usage, true, FLAG_TABLES);
      if (parsed.positionals.length !== 2 && parsed.positionals.length !== 0)
        throw new SidecarError(
          'ERR_CONFIG_INVALID',
          `policy check: expected METHOD PATH after the flags, e.g. GET /health (or neither, to only check the file), not ${parsed.positionals.map((p) => JSON.stringify(p)).join(' ')}`,
        );
      const [method, path] = parsed.positionals as [string?, string?];
      return { command: 'policy-check', options: parsed.values as Record<string, string>, method, path };
    }
    default:
      return {
        command: 'apikey-new',
        options: parseOptions(rest, APIKEY_NEW_OPTIONS, usage, false, FLAG_TABLES).values as Record<
          string,
          string | string[]
        >,
      };
  }
}

/** Parses argv (without `node` and the script) into a command. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): Command {
  const [first] = argv;
  if (first === '--help' || first === '-h') return { command: 'help', topic: 'overview' };
  if (first === 'help') return { command: 'help', topic: helpTopicOf(argv.slice(1)) };
  if (first === '--version' || first === 'version') return { command: 'version' };
  if (first === 'dev') {
    const rest = argv.slice(1);
    if (rest.length === 0 || HELP_FLAGS.includes(rest[0])) return { command: 'help', topic: 'dev' };
    return { command: 'dev', argv: rest };
  }
  if (first !== undefined && Object.hasOwn(GROUPS, first)) return parseGroup(first as Group, argv);
  if (first === 'inject-webhook') {
    const rest = argv.slice(1);
    if (wantsHelp(rest)) return { command: 'help', topic: 'inject-webhook' };
    return {
      command: 'inject-webhook',
      options: parseOptions(rest, INJECT_WEBHOOK_OPTIONS, 'spiffe-sidecar inject-webhook', false, FLAG_TABLES).values,
    };
  }
  const args = first === 'run' ? argv.slice(1) : argv;
  if (wantsHelp(args)) return { command: 'help', topic: 'run' };
  if (args[0] !== undefined && !args[0].startsWith('-')) {
    return unknownCommand(args[0], didYouMean(args[0], COMMAND_NAMES));
  }
  const options = withEnv(parseOptions(args, RUN_OPTIONS, 'spiffe-sidecar run', false, FLAG_TABLES).values, env);
  if (!options.config) return { command: 'run', options };
  // Precedence: flags, then the environment, then the file, then the defaults.
  const file = readConfigFile(options.config, RUN_OPTIONS);
  const merged: Record<string, unknown> = { ...file };
  for (const [key, value] of Object.entries(options)) if (value !== undefined) merged[key] = value;
  return { command: 'run', options: merged as RawOptions };
}

// --help ------------------------------------------------------------------------------------------------

/** Each command in one line: the overview lists these, and each command's help starts with its own. */
const SUMMARIES: Readonly<Record<Exclude<HelpTopic, 'overview'>, string>> = {
  run: 'the sidecar: verify and authorize callers, forward them to the app (the default command)',
  certs: 'a development trust domain on disk: a CA and SVIDs issued from it',
  'certs init': 'create a development CA for a trust domain',
  'certs issue': 'issue an X509-SVID from a development CA',
  policy: 'policy files',
  'policy check': 'what a policy file decides for a caller and a request, and warnings about it',
  apikey: 'API keys, for callers that hold neither an SVID nor a token',
  'apikey new': 'make an API key, and the line that admits it in --api-keys-file',
  'inject-webhook': 'Kubernetes admission webhook that adds the sidecar to annotated pods',
  dev: 'helpers for trying the sidecar on one machine (never for production)',
};

/** The flags of `run`, in the groups its help lists them in (every flag in exactly one; a test checks). */
export const RUN_FLAG_GROUPS: readonly (readonly [heading: string, flags: readonly RunFlag[]])[] = [
  [
    'The listener and the app',
    [
      'listen',
      'upstream',
      'unsafe-upstream',
      'protocol',
      'upstream-protocol',
      'http-engine',
      'proxy-protocol',
      'workers',
    ],
  ],
  ['Outbound: the app calls other services through the sidecar', ['outbound']],
  [
    'Our identity (SPIRE mode: the Workload API; file mode: the three --mtls-* files)',
    [
      'workload-api-socket',
      'svid-hint',
      'mtls-cert-file',
      'mtls-key-file',
      'mtls-ca-file',
      'federated-bundle',
      'watch',
      'reload-interval',
    ],
  ],
  [
    'Who may call (the default is to deny everyone)',
    [
      'allow',
      'allow-any',
      'policy-file',
      'policy-mode',
      'api-keys-file',
      'api-key-header',
      'api-key-prefix',
      'api-key-unused-after',
      'rate-limit-store',
      'rate-limit-store-password-file',
      'rate-limit-store-ca-file',
      'rate-limit-store-timeout',
      'rate-limit-store-failure',
      'rate-limit-replicas',
    ],
  ],
  [
    'What the app receives',
    [
      'identity-header',
      'xfcc',
      'claim-header',
      'identity-assertion',
      'identity-assertion-header',
      'identity-assertion-audience',
      'identity-assertion-ttl',
    ],
  ],
  [
    'Bearer tokens: JWT mode, or mTLS mode with --jwt-audience (a certificate, a token, or both)',
    [
      'auth-mode',
      'jwt-transport',
      'unsafe-plaintext-jwt',
      'jwt-audience',
      'jwt-bundle-file',
      'jwt-issuer',
      'jwt-jwks',
      'jwt-ca-file',
      'k8s-trust-domain',
      'allow-issuer',
      'jwt-forward-token',
      'jwt-issuer-header',
      'jwt-subject-header',
      'k8s-token-review',
      'k8s-api-server',
      'k8s-token-file',
      'k8s-token-review-interval',
      'k8s-token-review-only',
      'k8s-api-ca-file',
      'max-token-lifetime',
      'jwt-replay-cache',
    ],
  ],
  [
    'Limits',
    [
      'handshake-timeout',
      'header-timeout',
      'idle-timeout',
      'upstream-timeout',
      'request-body-timeout',
      'request-body-min-rate',
      'response-write-timeout',
      'tunnel-idle-timeout',
      'max-header-bytes',
      'max-header-count',
      'max-connections',
    ],
  ],
  ['Operations', ['admin-listen', 'ready-requires-upstream', 'drain-timeout', 'log-level', 'log-format', 'config']],
];

function flagsOf<K extends string>(
  specs: Readonly<Record<K, OptionSpec>>,
  defaults: Readonly<Record<K, FlagDefault>>,
  only?: readonly K[],
): string {
  const picked = only ? (Object.fromEntries(only.map((k) => [k, specs[k]])) as Record<K, OptionSpec>) : specs;
  return describeOptions(picked, defaults);
}

const HELP_LINE = helpLine('-h, --help', 'this help');

/** A command's help: summary, usage, then the sections given (flags, notes, examples). */
function page(topic: Exclude<HelpTopic, 'overview' | 'dev'>, usage: string[], ...sections: string[]): string {
  return `spiffe-sidecar ${topic}: ${SUMMARIES[topic]}

Usage:
${usage.map((u) => `  ${u}`).join('\n')}

${sections.join('\n\n')}
`;
}

/** `Example:` or `Examples:` (lines starting with `#` are comments, with a space continuations). */
function examples(...lines: string[]): string {
  const commands = lines.filter((l) => !l.startsWith('#') && !l.startsWith(' ')).length;
  return `Example${commands > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}`;
}

/** A group's help: its commands, one line each, and an example of each. */
function groupPage(group: Group, ...sections: string[]): string {
  const subs = GROUPS[group].map((s) => `${group} ${s}` as Exclude<HelpTopic, 'overview' | 'dev'>);
  return page(
    group,
    subs.map((s) => `spiffe-sidecar ${s} [flags]`),
    `Commands:\n${subs.map((s) => helpLine(s, SUMMARIES[s], 16)).join('\n')}`,
    ...sections,
    `'spiffe-sidecar ${group} COMMAND --help' lists a command's flags and their defaults.`,
  );
}

function runHelp(): string {
  const groups = RUN_FLAG_GROUPS.map(
    ([heading, flags]) => `${heading}:\n${flagsOf(RUN_OPTIONS, RUN_DEFAULTS, flags)}`,
  ).join('\n\n');
  const forms = OUTBOUND_FORMS.map(([form, meaning]) => helpLine(form, meaning)).join('\n');
  return page(
    'run',
    ['spiffe-sidecar [run] [flags]'],
    `Every flag can also be set as ${envName('<flag>')} (e.g. ${envName('allow')}; lists comma-separated) or
in a --config file; a flag on the command line wins over the environment, which wins over the file.`,
    `${groups}\n${HELP_LINE}`,
    `--outbound ROUTE: LISTEN is a literal loopback address the app calls in plain text (127.0.0.1:15001,
[::1]:15001); RULE is who the remote must be (allow-rule syntax). The forms:
${forms}`,
    examples(
      '# file mode: our SVID from files (see certs init, certs issue); admit one caller',
      'spiffe-sidecar run --upstream http://127.0.0.1:8080 \\',
      '  --mtls-cert-file web/tls.crt --mtls-key-file web/tls.key --mtls-ca-file web/ca.crt \\',
      '  --allow spiffe://example.org/ns/prod/sa/frontend',
      '# SPIRE mode, outbound only: the app calls http://127.0.0.1:15001, the sidecar calls orders over mTLS',
      'spiffe-sidecar run --workload-api-socket unix:///run/spire/sockets/agent.sock \\',
      "  --outbound '127.0.0.1:15001=https://orders.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/orders'",
    ),
  );
}

function overview(): string {
  const topics = ['run', 'certs init', 'certs issue', 'policy check', 'apikey new', 'inject-webhook', 'dev'] as const;
  return `spiffe-sidecar: a sidecar proxy that gives every workload a SPIFFE identity: mutual TLS with X509-SVIDs
(or JWTs), spec-exact verification, allow rules, identity headers

Usage:
  spiffe-sidecar COMMAND [flags]

Commands:
${topics.map((t) => helpLine(t, SUMMARIES[t], 16)).join('\n')}

More:
${helpLine('spiffe-sidecar COMMAND --help', "a command's usage, flags, defaults and an example (-h works too)", 30)}
${helpLine('spiffe-sidecar --version', 'the version', 30)}

Start with 'spiffe-sidecar run --help'.
`;
}

/** The text `--help` prints for a topic (`dev`'s comes from src/dev/commands.ts, loaded only for it). */
export function helpText(topic: Exclude<HelpTopic, 'dev'> = 'overview'): string {
  switch (topic) {
    case 'overview':
      return overview();
    case 'run':
      return runHelp();
    case 'certs':
      return groupPage(
        'certs',
        `Not a production CA: its key is a plain file. An existing file is never replaced without --force.`,
        examples(
          'spiffe-sidecar certs init --trust-domain example.org --out dev-ca',
          'spiffe-sidecar certs issue --ca dev-ca --id spiffe://example.org/ns/prod/sa/web --out web',
        ),
      );
    case 'certs init':
      return page(
        topic,
        ['spiffe-sidecar certs init --trust-domain TD --out DIR [flags]'],
        `Flags:\n${flagsOf(CERTS_INIT_OPTIONS, CERTS_INIT_DEFAULTS)}\n${HELP_LINE}`,
        `Writes DIR/ca.crt (the trust bundle, for --mtls-ca-file) and DIR/ca.key (the CA's key: keep it private).
An existing ca.crt or ca.key is never replaced without --force: the SVIDs issued by the old CA would stop
verifying. SVIDs issued from it with 'certs issue' last ${CERTS_ISSUE_DEFAULTS.lifetime.value} unless --lifetime says otherwise.`,
        examples('spiffe-sidecar certs init --trust-domain example.org --out dev-ca'),
      );
    case 'certs issue':
      return page(
        topic,
        ['spiffe-sidecar certs issue --id SPIFFE_ID --ca DIR --out DIR [flags]'],
        `Flags:\n${flagsOf(CERTS_ISSUE_OPTIONS, CERTS_ISSUE_DEFAULTS)}\n${HELP_LINE}`,
        `Writes OUT/tls.crt (the SVID: --mtls-cert-file), OUT/tls.key (its key: --mtls-key-file) and OUT/ca.crt
(the trust bundle: --mtls-ca-file), as a Kubernetes TLS Secret holds them; existing files only with --force.
The SVID: ECDSA P-256, one URI SAN (the ID, which needs a path), serverAuth and clientAuth.`,
        examples(
          'spiffe-sidecar certs issue --ca dev-ca --id spiffe://example.org/ns/prod/sa/web --out web',
          'spiffe-sidecar certs issue --ca dev-ca --id spiffe://example.org/ns/prod/sa/web --out web --lifetime 24h --force',
        ),
      );
    case 'policy':
      return groupPage(
        'policy',
        examples(
          'spiffe-sidecar policy check --policy-file policy.yaml --id spiffe://example.org/ns/prod/sa/web GET /orders/1',
        ),
      );
    case 'policy check':
      return page(
        topic,
        [
          'spiffe-sidecar policy check --policy-file FILE [caller flags] METHOD PATH',
          'spiffe-sidecar policy check --policy-file FILE',
        ],
        `Flags:\n${flagsOf(POLICY_CHECK_OPTIONS, POLICY_CHECK_DEFAULTS)}\n${HELP_LINE}`,
        `With METHOD PATH, prints allow or deny and the rule that decided; exit status 0 allow, 3 deny, 1 an
error. Without them, only checks the file and prints valid. Either way, warnings follow about deny rules
that another spelling of a path (/Admin, /admin/) escapes. The caller: --id, or --issuer with --claims, or
--api-key.`,
        examples(
          'spiffe-sidecar policy check --policy-file policy.yaml --id spiffe://example.org/ns/prod/sa/web GET /orders/1',
          `spiffe-sidecar policy check --policy-file policy.yaml --issuer keycloak --claims '{"sub":"ann"}' DELETE /x`,
        ),
      );
    case 'apikey':
      return groupPage('apikey', examples('spiffe-sidecar apikey new --name partner-x --expires 90d'));
    case 'apikey new':
      return page(
        topic,
        ['spiffe-sidecar apikey new --name NAME [flags]'],
        `Flags:\n${flagsOf(APIKEY_NEW_OPTIONS, APIKEY_NEW_DEFAULTS)}\n${HELP_LINE}`,
        `Prints the key once (give it to the caller) and the line to add to --api-keys-file (its SHA-256: the
key itself is stored nowhere). Policy rules name the caller by NAME (callers.api_keys).`,
        examples('spiffe-sidecar apikey new --name partner-x --expires 90d --route POST:/invoke'),
      );
    case 'inject-webhook':
      return page(
        topic,
        ['spiffe-sidecar inject-webhook --tls-cert-file FILE --tls-key-file FILE --image IMAGE [flags]'],
        `Flags:\n${flagsOf(INJECT_WEBHOOK_OPTIONS, INJECT_WEBHOOK_DEFAULTS)}\n${HELP_LINE}`,
        examples(
          'spiffe-sidecar inject-webhook --tls-cert-file /tls/tls.crt --tls-key-file /tls/tls.key \\',
          '  --image ghcr.io/acme/spiffe-sidecar:0.1.0',
        ),
      );
  }
}
