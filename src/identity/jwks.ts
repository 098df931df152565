// JWKS documents and SPIFFE bundles (same JSON shape: `keys`): parsed with a size limit and the minimum
// structure checked; the verifiers decide which entries they use. Throws ERR_BUNDLE_INVALID.
import { SidecarError } from '../errors.js';
import type { JWKS } from '../spiffe/jwtsvid.js';

export function parseJwks(document: unknown, source: string): JWKS {
  const bad = (why: string): never => {
    throw new SidecarError('ERR_BUNDLE_INVALID', `${source}: ${why}`);
  };
  if (typeof document !== 'object' || document === null || Array.isArray(document)) bad('not a JSON object');
  const keys = (document as { keys?: unknown }).keys;
  // SPIFFE bundles must have `keys` (an empty list is allowed): Trust Domain and Bundle §4.1.
  if (!Array.isArray(keys)) bad('no "keys" list (a JWKS or a SPIFFE bundle has one)');
  for (const [i, key] of (keys as unknown[]).entries()) {
    if (typeof key !== 'object' || key === null || typeof (key as { kty?: unknown }).kty !== 'string') {
      bad(`keys[${i}] is not a JWK (no "kty")`);
    }
  }
  const jwks: JWKS = { keys: Object.freeze([...(keys as JWKS['keys'])]) as JWKS['keys'] };
  // Kept because they say the document is a SPIFFE bundle, whose entries must name their use (jwtsvid.ts).
  for (const member of ['spiffe_sequence', 'spiffe_refresh_hint'] as const) {
    const value = (document as Record<string, unknown>)[member];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) bad(`"${member}" is not a whole number`);
    jwks[member] = value as number;
  }
  return Object.freeze(jwks);
}

/** Parses JWKS text (a file, a Workload API message). */
export function parseJwksText(text: string, source: string): JWKS {
  if (text.length > 1024 * 1024) throw new SidecarError('ERR_BUNDLE_INVALID', `${source}: larger than 1 MiB`);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new SidecarError('ERR_BUNDLE_INVALID', `${source}: not JSON`);
  }
  return parseJwks(document, source);
}
