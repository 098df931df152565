// `spiffe-sidecar inject-webhook`: placeholder until the webhook lands.
import { SidecarError } from '../errors.js';

export interface RunningWebhook {
  stop(): Promise<void>;
}

export async function runInjectWebhook(_options: Record<string, unknown>): Promise<RunningWebhook> {
  throw new SidecarError('ERR_CONFIG_INVALID', 'inject-webhook is not implemented yet');
}
