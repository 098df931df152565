// `spiffe-sidecar apikey new`: a fresh key, printed once, and the line that admits it. Only the line
// (the key's SHA-256, name, created= and limits) goes into --api-keys-file; the key goes to the caller and
// is never stored. Bad flags throw ERR_CONFIG_INVALID naming the flag and the fix.
import { parseDuration } from '../duration.js';
import { SidecarError } from '../errors.js';
import {
  API_KEY_PREFIX,
  isApiKeyName,
  isApiKeyPrefix,
  newApiKey,
  parseApiKeys,
  parseExpiry,
  parseRoute,
} from './api-keys.js';

function invalid(message: string): never {
  throw new SidecarError('ERR_CONFIG_INVALID', `apikey new: ${message}`);
}

/** An ISO time as the file writes it: UTC, whole seconds (a key made at 10:00:00.750 was made at 10:00:00). */
function fileTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

export function apiKeyNew(options: Record<string, string | string[] | undefined>, now = Date.now()): string {
  const name = options.name;
  if (typeof name !== 'string' || name === '') invalid('--name is required: the identity name rules refer to');
  if (!isApiKeyName(name))
    invalid(
      `--name ${JSON.stringify(name)}: the name must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  const prefix = typeof options.prefix === 'string' ? options.prefix : API_KEY_PREFIX;
  // The same rule as --api-key-prefix: a key this prints is one the sidecar can be told to accept.
  if (!isApiKeyPrefix(prefix))
    invalid(`--prefix ${JSON.stringify(prefix)}: 1-16 lower-case letters and digits, then "_", e.g. gak_`);
  const fields: string[] = [`created=${fileTime(now)}`];
  const expires = options.expires;
  if (typeof expires === 'string') {
    const hint = 'write a duration from now (90d) or an ISO date (2030-01-31, 2030-01-31T12:00:00Z)';
    let at: number | undefined;
    if (/^\d{4}-/.test(expires)) at = parseExpiry(expires);
    else if (/^\d+(ms|s|m|h|d)(\d+(ms|s|m|h|d))*$/.test(expires)) at = now + parseDuration(expires, '--expires');
    if (at === undefined) invalid(`--expires ${JSON.stringify(expires)}: ${hint}`);
    if (at <= now) invalid(`--expires ${JSON.stringify(expires)} is in the past`);
    fields.push(`expires=${new Date(at).toISOString().replace(/\.000Z$/, 'Z')}`);
  }
  const routes = options.route;
  for (const route of Array.isArray(routes) ? routes : []) {
    const parsed = parseRoute(route);
    const method = /^([A-Za-z]+):/.exec(route)?.[1];
    if (typeof parsed === 'string' && method !== undefined && method !== method.toUpperCase())
      invalid(
        `--route ${JSON.stringify(route)}: write the method in upper case: ${route.replace(method, method.toUpperCase())}`,
      );
    if (typeof parsed === 'string') invalid(`--route ${JSON.stringify(route)}: ${parsed}`);
    fields.push(`route=${route}`);
  }
  const { key, sha256 } = newApiKey(prefix);
  const line = [`sha256:${sha256}`, name, ...fields].join(' ');
  // The same parser the sidecar uses: a line this command prints is always accepted.
  try {
    parseApiKeys(line, '--name', { prefix });
  } catch (err) {
    invalid((err as Error).message.replace(/^--name line 1: /, ''));
  }
  const run = prefix === API_KEY_PREFIX ? '' : ` (run the sidecar with --api-key-prefix ${prefix})`;
  return `key:  ${key}\nline: ${line}\n\nGive the key to the caller (it is shown only this once); add the line to --api-keys-file${run}.\n`;
}
