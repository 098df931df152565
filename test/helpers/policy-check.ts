// `spiffe-sidecar policy check ARGS` run in-process, from its argv (the real command-line parser) to its exit
// status and stdout; the real process is tested end to end elsewhere.
import { PassThrough } from 'node:stream';
import { policyCheck } from '../../src/authz/policy-commands.js';
import { parseCommandLine } from '../../src/cli.js';

export async function runPolicyCheck(...args: string[]): Promise<{ code: number; stdout: string }> {
  const command = parseCommandLine(['policy', 'check', ...args], {});
  if (command.command !== 'policy-check') throw new Error(`parsed as ${command.command}`);
  const out = new PassThrough();
  let stdout = '';
  out.on('data', (d: Buffer) => (stdout += d.toString()));
  const code = await policyCheck(command.options, command.method, command.path, out);
  return { code, stdout };
}
