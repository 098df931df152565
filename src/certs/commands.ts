// `spiffe-sidecar certs init|issue`: the development trust domain on disk. Neither replaces a file that
// exists without --force (a new CA would leave every SVID of the old one unverifiable), and each says
// where its files went and what they are for.
import { relative } from 'node:path';
import { CERTS_INIT_DEFAULTS, CERTS_ISSUE_DEFAULTS } from '../config/defaults.js';
import { parseDuration } from '../duration.js';
import { isSidecarError, SidecarError } from '../errors.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from '../spiffe/id.js';
import { createDevCa, issueSvid, loadDevCa, saveDevCa, saveSvid } from './dev-ca.js';

type Options = Record<string, string | boolean | undefined>;

/** A certificate valid past 9999 cannot be written (GeneralizedTime); a dev CA needs nothing near that. */
const MAX_LIFETIME = '36500d';
const DAY_MS = 86_400_000;

function required(options: Options, flag: string, example: string): string {
  const value = options[flag];
  if (typeof value !== 'string' || value === '')
    throw new SidecarError('ERR_CONFIG_MISSING', `--${flag} is required, e.g. --${flag} ${example}`);
  return value;
}

function lifetime(options: Options, fallback: string): { ms: number; text: string; given: boolean } {
  const text = typeof options.lifetime === 'string' ? options.lifetime : fallback;
  const ms = parseDuration(text, '--lifetime');
  if (ms > parseDuration(MAX_LIFETIME, '--lifetime'))
    throw new SidecarError('ERR_CONFIG_INVALID', `--lifetime ${text}: at most ${MAX_LIFETIME} (100 years)`);
  return { ms, text, given: typeof options.lifetime === 'string' };
}

/** Re-throws a parse error of a flag's value with the flag's name in front, keeping its code. */
function naming<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (!isSidecarError(err)) throw err;
    throw new SidecarError(err.code, `${flag}: ${err.message}`, { cause: err });
  }
}

/** A path as the user will type it next: relative to here when it is below here, else absolute. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

function fileLines(paths: readonly string[], meanings: readonly string[]): string {
  const width = Math.max(...paths.map((p) => shown(p).length));
  return paths.map((p, i) => `  ${shown(p).padEnd(width)}  ${meanings[i]}`).join('\n');
}

export async function certsInit(options: Options): Promise<string> {
  const trustDomain = naming('--trust-domain', () =>
    parseTrustDomain(required(options, 'trust-domain', 'example.org')),
  );
  const out = required(options, 'out', './dev-ca');
  const { ms } = lifetime(options, CERTS_INIT_DEFAULTS.lifetime.value);
  const ca = await createDevCa({ trustDomain, notAfter: new Date(Date.now() + ms) });
  const paths = await saveDevCa(ca, out, {
    overwrite: options.force === true,
    whyKeep: 'a CA: every SVID it issued would stop verifying if it were replaced',
  });
  const svid = CERTS_ISSUE_DEFAULTS.lifetime.value;
  return `created the CA of trust domain "${ca.trustDomain}", valid until ${ca.cert.notAfter.toISOString()}:
${fileLines(paths, ['the trust bundle: every sidecar of the trust domain gets it (--mtls-ca-file)', "the CA's private key: keep it private"])}
SVIDs from 'spiffe-sidecar certs issue --ca ${out} --id spiffe://${ca.trustDomain}/...' last ${svid} by default (--lifetime to change).`;
}

export async function certsIssue(options: Options): Promise<string> {
  const idText = required(options, 'id', 'spiffe://example.org/ns/prod/sa/web');
  const id: SpiffeId = naming('--id', () => parseSpiffeId(idText));
  if (id.path === '')
    throw new SidecarError(
      'ERR_INVALID_SPIFFE_ID',
      `--id ${id}: an SVID's ID needs a path after the trust domain, e.g. ${id}/ns/prod/sa/web`,
    );
  const caDir = required(options, 'ca', './dev-ca');
  const out = required(options, 'out', './web');
  const life = lifetime(options, CERTS_ISSUE_DEFAULTS.lifetime.value);
  const ca = await loadDevCa(caDir);
  if (id.trustDomain !== ca.trustDomain) {
    throw new SidecarError(
      'ERR_INVALID_SPIFFE_ID',
      `--id ${id}: the CA in ${caDir} issues IDs of trust domain "${ca.trustDomain}" only, e.g. spiffe://${ca.trustDomain}${id.path}`,
    );
  }
  const caEnd = ca.cert.notAfter.getTime();
  if (Date.now() + life.ms > caEnd) {
    const days = Math.floor((caEnd - Date.now()) / DAY_MS);
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `--lifetime ${life.text}: the SVID would outlive its CA, which expires at ${ca.cert.notAfter.toISOString()}${days >= 1 ? `; give at most ${days}d` : ''}`,
    );
  }
  const svid = await issueSvid(ca, { id: id.toString(), lifetimeMs: life.ms });
  const paths = await saveSvid(svid, ca.certPem, out, { overwrite: options.force === true });
  const how = life.given ? '' : ' (the default; --lifetime to change)';
  return `issued ${id} (serial ${svid.serialNumber}), valid for ${life.text}${how}, until ${svid.cert.notAfter.toISOString()}:
${fileLines(paths, ['the SVID and its chain (--mtls-cert-file)', 'its private key (--mtls-key-file)', 'the trust bundle (--mtls-ca-file)'])}`;
}
