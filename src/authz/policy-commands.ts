// `spiffe-sidecar policy check`: what would the policy file decide for this caller and request? For
// operators and CI: prints the decision and the rule behind it; exit status 0 allow, 3 deny.
import type { PeerIdentity } from '../authn/identity.js';
import { SidecarError } from '../errors.js';
import { readFlagFile } from '../flag-file.js';
import { parseSpiffeId } from '../spiffe/id.js';
import { createFileAuthorizer } from './policy.js';
import { parsePolicy } from './policy-file.js';

export const DENY_EXIT_STATUS = 3;

function invalid(message: string): never {
  throw new SidecarError('ERR_CONFIG_INVALID', `policy check: ${message}`);
}

/** The caller the flags describe: an API key name, or a SPIFFE ID and/or an issuer with claims. */
function callerOf(options: Record<string, string | undefined>): PeerIdentity {
  const { id, issuer, claims: claimsText } = options;
  const apiKey = options['api-key'];
  if (apiKey !== undefined) {
    if (id !== undefined || issuer !== undefined || claimsText !== undefined)
      invalid('--api-key excludes --id, --issuer and --claims: an API key caller has only its name');
    return { method: 'api_key', name: apiKey };
  }
  let claims: Record<string, unknown> | undefined;
  if (claimsText !== undefined) {
    try {
      claims = JSON.parse(claimsText) as Record<string, unknown>;
    } catch (err) {
      invalid(`--claims is not JSON (${(err as Error).message})`);
    }
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims))
      invalid('--claims must be a JSON object, e.g. \'{"sub":"x","realm_access":{"roles":["admin"]}}\'');
  }
  const spiffeId = id === undefined ? undefined : parseSpiffeId(id);
  if (spiffeId && !issuer && !claims) return { method: 'mtls', id: spiffeId, leafSha256: '' };
  if (spiffeId) return { method: 'jwt', id: spiffeId, issuer, subject: spiffeId.toString(), claims };
  if (issuer === undefined)
    invalid('describe the caller: --id SPIFFE_ID, --issuer NAME with --claims JSON, or --api-key NAME');
  const subject = typeof claims?.sub === 'string' ? claims.sub : '';
  return { method: 'oidc', issuer, subject, claims };
}

export async function policyCheck(
  options: Record<string, string | undefined>,
  method: string,
  target: string,
  out: NodeJS.WritableStream,
): Promise<number> {
  const file = options['policy-file'];
  if (!file) invalid('--policy-file is required');
  if (!/^[A-Z]{1,20}$/.test(method)) invalid(`method ${JSON.stringify(method)}: write it in upper case, e.g. GET`);
  const label = `--policy-file ${file}`;
  const policy = parsePolicy(await readFlagFile('--policy-file', file), label);
  const caller = callerOf(options);
  const decision = createFileAuthorizer(() => policy).decide(caller, method, target);
  const lines = decision.allow
    ? [`allow`, `rule: ${decision.rule}`]
    : [`deny`, ...(decision.rule ? [`rule: ${decision.rule}`] : []), `reason: ${decision.reason}`];
  out.write(`${lines.join('\n')}\n`);
  return decision.allow ? 0 : DENY_EXIT_STATUS;
}
