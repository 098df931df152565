// `spiffe-sidecar certs init|issue`: the development trust domain on disk.

import { parseDuration } from '../duration.js';
import { SidecarError } from '../errors.js';
import { createDevCa, issueSvid, loadDevCa, saveDevCa, saveSvid } from './dev-ca.js';

function required(options: Record<string, string | undefined>, flag: string, example: string): string {
  const value = options[flag];
  if (!value) throw new SidecarError('ERR_CONFIG_MISSING', `--${flag} is required, e.g. --${flag} ${example}`);
  return value;
}

export async function certsInit(options: Record<string, string | undefined>): Promise<string> {
  const trustDomain = required(options, 'trust-domain', 'example.org');
  const out = required(options, 'out', './dev-ca');
  const lifetime = options.lifetime ? parseDuration(options.lifetime, '--lifetime') : undefined;
  const ca = await createDevCa({
    trustDomain,
    notAfter: lifetime ? new Date(Date.now() + lifetime) : undefined,
  });
  await saveDevCa(ca, out);
  return `created the CA of trust domain "${ca.trustDomain}" in ${out} (ca.crt, ca.key)`;
}

export async function certsIssue(options: Record<string, string | undefined>): Promise<string> {
  const id = required(options, 'id', 'spiffe://example.org/web');
  const caDir = required(options, 'ca', './dev-ca');
  const out = required(options, 'out', './web');
  const lifetimeMs = options.lifetime ? parseDuration(options.lifetime, '--lifetime') : undefined;
  const ca = await loadDevCa(caDir);
  if (!id.startsWith(`spiffe://${ca.trustDomain}/`)) {
    throw new SidecarError(
      'ERR_INVALID_SPIFFE_ID',
      `--id ${id}: the CA in ${caDir} issues IDs of trust domain "${ca.trustDomain}" only`,
    );
  }
  const svid = await issueSvid(ca, { id, lifetimeMs });
  await saveSvid(svid, ca.certPem, out);
  return `issued ${id} (serial ${svid.serialNumber}, not after ${svid.cert.notAfter.toISOString()}) in ${out} (tls.crt, tls.key, ca.crt)`;
}
