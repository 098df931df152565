// `spiffe-sidecar apikey new`: placeholder.
export function apiKeyNew(_options: Record<string, string | string[] | undefined>): string {
  return '';
}
