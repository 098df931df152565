// Flags of `spiffe-sidecar inject-webhook` (owned by the webhook module).
import type { OptionSpec } from '../cli.js';

export const INJECT_WEBHOOK_OPTIONS: Record<string, OptionSpec> = {
  listen: { type: 'string', value: 'HOST:PORT', help: 'where to serve HTTPS admission reviews (default 0.0.0.0:9443)' },
};
