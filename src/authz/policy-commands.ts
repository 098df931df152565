// `spiffe-sidecar policy check`: placeholder.
export async function policyCheck(
  _options: Record<string, string | undefined>,
  _method: string,
  _path: string,
  _out: NodeJS.WritableStream,
): Promise<number> {
  return 2;
}
