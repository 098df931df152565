// `spiffe-sidecar dev …`: local helpers for trying the sidecar on one machine (never for production: keys
// are plain files, the Workload API attests nobody). Each subcommand loads only what it needs.
// Bad input throws a SidecarError naming the flag (the CLI prints it and exits 1).
import { parseHostPort } from '../config.js';
import type { FlagDefault } from '../config/defaults.js';
import { describeOptions, type OptionSpec, parseOptions, type ParsedValues } from '../config/option-spec.js';
import { parseDuration } from '../duration.js';
import { SidecarError } from '../errors.js';
import { parseSpiffeId, parseTrustDomain } from '../spiffe/id.js';

const ISSUER_OPTIONS = {
  dir: { type: 'string', value: 'DIR', help: 'where the signing key, TLS files and issuer.json are kept' },
  listen: { type: 'string', value: 'HOST:PORT', help: 'loopback address to serve on (port 0: any free port)' },
  name: { type: 'string', value: 'NAME', help: 'the issuer name in the printed --jwt-issuer NAME=URL' },
} satisfies Record<string, OptionSpec>;
const ISSUER_DEFAULTS: Record<keyof typeof ISSUER_OPTIONS, FlagDefault> = {
  dir: { shown: '(required)' },
  listen: { value: '127.0.0.1:8444' },
  name: { value: 'dev' },
};

const TOKEN_OPTIONS = {
  dir: { type: 'string', value: 'DIR', help: "the directory of 'dev issuer', or any (a CA's) with --spiffe-id" },
  sub: { type: 'string', value: 'SUBJECT', help: "an issuer token's subject; its iss is DIR/issuer.json's URL" },
  'spiffe-id': {
    type: 'string',
    value: 'SPIFFE_ID',
    help: 'a JWT-SVID instead: sub is this SPIFFE ID, no iss (see dev jwt-bundle)',
  },
  aud: { type: 'string', multiple: true, value: 'AUDIENCE', help: 'the aud claim (repeatable)' },
  claim: { type: 'string', multiple: true, value: 'NAME=VALUE', help: 'an extra string claim (repeatable)' },
  'claims-json': { type: 'string', value: 'JSON', help: 'extra claims as a JSON object (--claim wins)' },
  ttl: { type: 'string', value: 'DURATION', help: 'lifetime: exp is now plus this' },
} satisfies Record<string, OptionSpec>;
const TOKEN_DEFAULTS: Record<keyof typeof TOKEN_OPTIONS, FlagDefault> = {
  dir: { shown: '(required)' },
  sub: { shown: '(required unless --spiffe-id)' },
  'spiffe-id': { shown: 'none' },
  aud: { shown: '(required)' },
  claim: { shown: 'none' },
  'claims-json': { shown: 'none' },
  ttl: { value: '5m' },
};

const BUNDLE_OPTIONS = {
  dir: { type: 'string', value: 'DIR', help: 'the directory whose key signs the JWT-SVIDs (dev token --dir)' },
  'trust-domain': { type: 'string', value: 'TD', help: 'the trust domain of those JWT-SVIDs, e.g. example.org' },
  out: { type: 'string', value: 'FILE', help: 'write the bundle there (otherwise it is printed)' },
} satisfies Record<string, OptionSpec>;
const BUNDLE_DEFAULTS: Record<keyof typeof BUNDLE_OPTIONS, FlagDefault> = {
  dir: { shown: '(required)' },
  'trust-domain': { shown: '(required)' },
  out: { shown: 'none' },
};

const WORKLOAD_API_OPTIONS = {
  socket: { type: 'string', value: 'PATH', help: 'the Unix socket to serve on, made 0600' },
  ca: { type: 'string', value: 'DIR', help: "the dev CA of 'certs init': issues X509-SVIDs, signs JWT-SVIDs" },
  id: { type: 'string', value: 'SPIFFE_ID', help: 'the SPIFFE ID of the workload served' },
  ttl: { type: 'string', value: 'DURATION', help: 'X509-SVID lifetime; a new one is pushed at half of it' },
} satisfies Record<string, OptionSpec>;
const WORKLOAD_API_DEFAULTS: Record<keyof typeof WORKLOAD_API_OPTIONS, FlagDefault> = {
  socket: { shown: '(required)' },
  ca: { shown: '(required)' },
  id: { shown: '(required)' },
  ttl: { value: '1h' },
};

/** Claims a flag of their own sets: `--claim` and `--claims-json` may not. */
const RESERVED_CLAIMS: Record<string, string> = {
  iss: 'the issuer URL in DIR/issuer.json',
  sub: '--sub or --spiffe-id',
  aud: '--aud',
  exp: '--ttl',
  iat: 'the time of minting',
  nbf: 'not set',
  jti: 'a random ID',
};

type Values = ParsedValues;

function parse(args: string[], specs: Record<string, OptionSpec>, sub: string): Values {
  return parseOptions(args, specs, `spiffe-sidecar dev ${sub}`).values;
}

function required(values: Values, flag: string, example: string): string {
  const value = values[flag];
  if (typeof value !== 'string' || value === '')
    throw new SidecarError('ERR_CONFIG_MISSING', `--${flag} is required, e.g. --${flag} ${example}`);
  return value;
}

function invalid(message: string): never {
  throw new SidecarError('ERR_CONFIG_INVALID', message);
}

/** Runs `dev <subcommand> [flags]` (`argv`: what follows `dev`); resolves with the exit status. */
export async function runDevCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  const [sub, ...args] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help' || args.includes('--help')) {
    out.write(devHelpText());
    return sub === undefined ? 1 : 0;
  }
  switch (sub) {
    case 'issuer':
      return devIssuer(parse(args, ISSUER_OPTIONS, sub), out);
    case 'token':
      return devToken(parse(args, TOKEN_OPTIONS, sub), out);
    case 'jwt-bundle':
      return devJwtBundle(parse(args, BUNDLE_OPTIONS, sub), out);
    case 'workload-api':
      return devWorkloadApi(parse(args, WORKLOAD_API_OPTIONS, sub), out);
    default:
      throw new SidecarError(
        'ERR_CONFIG_INVALID',
        `unknown command 'dev ${sub}'; use 'dev issuer', 'dev token', 'dev jwt-bundle' or 'dev workload-api' (see 'spiffe-sidecar dev --help')`,
      );
  }
}

/** Resolves on the first SIGTERM or SIGINT (the handlers are removed then). */
function untilStopped(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve(signal);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}

async function devIssuer(values: Values, out: NodeJS.WritableStream): Promise<number> {
  const dir = required(values, 'dir', './dev-issuer');
  const { host, port } = parseHostPort((values.listen as string | undefined) ?? '127.0.0.1:8444', '--listen');
  const { startDevIssuer } = await import('./issuer.js');
  const issuer = await startDevIssuer({ dir, host, port, name: (values.name as string | undefined) ?? 'dev' });
  const stopped = untilStopped();
  out.write(
    `dev issuer "${issuer.name}" on ${issuer.url} (key and certificates in ${dir})\n` +
      `  sidecar flags: ${issuer.sidecarFlags.join(' ')}\n` +
      `  a token:       spiffe-sidecar dev token --dir ${dir} --sub SUBJECT --aud AUDIENCE\n` +
      'serving until SIGTERM or SIGINT\n',
  );
  await stopped;
  await issuer.close();
  return 0;
}

function parseClaims(values: Values): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  // Own properties whatever the name (`__proto__` included): claims are data, never the object's shape.
  const set = (name: string, value: unknown) =>
    Object.defineProperty(claims, name, { value, enumerable: true, writable: true, configurable: true });
  const json = values['claims-json'] as string | undefined;
  if (json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch {
      invalid(`--claims-json ${JSON.stringify(json)}: not JSON; write an object, e.g. '{"groups":["admins"]}'`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      invalid(`--claims-json ${JSON.stringify(json)}: not a JSON object; write e.g. '{"groups":["admins"]}'`);
    for (const [name, value] of Object.entries(parsed as object)) set(name, value);
  }
  for (const pair of (values.claim as string[] | undefined) ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) invalid(`--claim ${JSON.stringify(pair)}: expected NAME=VALUE, e.g. --claim team=payments`);
    set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  for (const name of Object.keys(claims)) {
    if (Object.hasOwn(RESERVED_CLAIMS, name)) {
      const flag = (values.claim as string[] | undefined)?.some((c) => c.startsWith(`${name}=`))
        ? '--claim'
        : '--claims-json';
      invalid(`${flag}: the claim "${name}" is not yours to set (${RESERVED_CLAIMS[name]})`);
    }
  }
  return claims;
}

async function devToken(values: Values, out: NodeJS.WritableStream): Promise<number> {
  const dir = required(values, 'dir', './dev-issuer');
  const spiffeId = values['spiffe-id'] as string | undefined;
  const subject = values.sub as string | undefined;
  if (spiffeId !== undefined && subject !== undefined)
    invalid('--sub and --spiffe-id exclude each other: a JWT-SVID’s sub is its SPIFFE ID');
  if (spiffeId === undefined && !subject)
    throw new SidecarError(
      'ERR_CONFIG_MISSING',
      '--sub is required, e.g. --sub ci-job (or --spiffe-id spiffe://example.org/ns/prod/sa/frontend for a JWT-SVID)',
    );
  const aud = (values.aud as string[] | undefined) ?? [];
  if (aud.length === 0)
    throw new SidecarError('ERR_CONFIG_MISSING', '--aud is required, e.g. --aud orders (the sidecar’s --jwt-audience)');
  if (aud.some((a) => a === '')) invalid('--aud: an audience may not be empty');
  const ttlMs = parseDuration((values.ttl as string | undefined) ?? '5m', '--ttl');
  const claims = parseClaims(values);
  let sub: string;
  if (spiffeId !== undefined) {
    let id: ReturnType<typeof parseSpiffeId>;
    try {
      id = parseSpiffeId(spiffeId);
    } catch (err) {
      return invalid(`--spiffe-id ${JSON.stringify(spiffeId)}: ${(err as Error).message}`);
    }
    if (id.path === '')
      invalid(`--spiffe-id ${spiffeId}: a JWT-SVID names a workload, e.g. ${id.toString()}/ns/prod/sa/frontend`);
    sub = id.toString();
  } else sub = subject as string;
  const [{ loadOrCreateSigningKey, signToken }, issuerRecord] = await Promise.all([
    import('./jwt-key.js'),
    spiffeId === undefined ? import('./issuer.js').then((m) => m.readIssuerRecord(dir)) : undefined,
  ]);
  const key = await loadOrCreateSigningKey(dir);
  out.write(`${await signToken(key, { sub, aud, ttlMs, issuer: issuerRecord?.issuer, claims })}\n`);
  return 0;
}

async function devJwtBundle(values: Values, out: NodeJS.WritableStream): Promise<number> {
  const dir = required(values, 'dir', './dev-ca');
  const tdText = required(values, 'trust-domain', 'example.org');
  let trustDomain: string;
  try {
    trustDomain = parseTrustDomain(tdText);
  } catch (err) {
    return invalid(`--trust-domain ${JSON.stringify(tdText)}: ${(err as Error).message}`);
  }
  const file = values.out as string | undefined;
  const { loadOrCreateSigningKey, spiffeJwtBundleOf, writeDevFile } = await import('./jwt-key.js');
  const text = `${JSON.stringify(spiffeJwtBundleOf(await loadOrCreateSigningKey(dir)), null, 2)}\n`;
  if (file === undefined) {
    out.write(text);
    return 0;
  }
  await writeDevFile('--out', file, text);
  out.write(
    `wrote the JWT bundle of trust domain "${trustDomain}" to ${file}\n` +
      `  sidecar flag: --jwt-bundle-file ${trustDomain}=${file}\n`,
  );
  return 0;
}

async function devWorkloadApi(values: Values, out: NodeJS.WritableStream): Promise<number> {
  const socket = required(values, 'socket', '/tmp/dev-agent.sock');
  const caDir = required(values, 'ca', './dev-ca');
  const id = required(values, 'id', 'spiffe://example.org/ns/prod/sa/orders');
  const ttlMs = parseDuration((values.ttl as string | undefined) ?? '1h', '--ttl');
  const { startDevWorkloadApi } = await import('./workload-api.js');
  const api = await startDevWorkloadApi({
    socket,
    caDir,
    id,
    svidTtlMs: ttlMs,
    onRenew: (line) => out.write(`${line}\n`),
  });
  const stopped = untilStopped();
  out.write(
    `dev Workload API for ${api.spiffeId} on ${api.address} (X509-SVIDs from the CA in ${caDir}, renewed every ${Math.round(api.renewEveryMs / 1000)}s)\n` +
      `  sidecar flag: --workload-api-socket ${api.address}\n` +
      'serving until SIGTERM or SIGINT\n',
  );
  await stopped;
  await api.close();
  return 0;
}

/** `spiffe-sidecar dev --help`. */
export function devHelpText(): string {
  return `spiffe-sidecar dev: local helpers to try the sidecar on one machine (development only: keys are plain
files, and the local Workload API hands its SVID to any process that can open the socket)

Usage:
  spiffe-sidecar dev issuer [flags]        a local OIDC issuer: discovery and JWKS over HTTPS on loopback,
                                           until SIGTERM/SIGINT; prints the sidecar flags that trust it
  spiffe-sidecar dev token [flags]         print a token signed by the key in --dir: an issuer token, or
                                           a JWT-SVID with --spiffe-id (TOKEN=$(spiffe-sidecar dev token ...))
  spiffe-sidecar dev jwt-bundle [flags]    the JWT bundle of the key in --dir, for --jwt-bundle-file TD=FILE
  spiffe-sidecar dev workload-api [flags]  a local SPIFFE Workload API on a Unix socket: X509-SVIDs from a
                                           dev CA (renewed), JWT-SVIDs and bundles; SPIRE mode without SPIRE

dev issuer flags:
${describeOptions(ISSUER_OPTIONS, ISSUER_DEFAULTS)}

dev token flags:
${describeOptions(TOKEN_OPTIONS, TOKEN_DEFAULTS)}

dev jwt-bundle flags:
${describeOptions(BUNDLE_OPTIONS, BUNDLE_DEFAULTS)}

dev workload-api flags:
${describeOptions(WORKLOAD_API_OPTIONS, WORKLOAD_API_DEFAULTS)}
`;
}
