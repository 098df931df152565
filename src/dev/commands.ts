// `spiffe-sidecar dev …`: local helpers for trying the sidecar on one machine (never for production).
// Placeholder: the commands land with issue 21.
import { SidecarError } from '../errors.js';

/** Runs `dev <subcommand> [flags]` (`argv`: what follows `dev`); resolves with the exit status. */
export async function runDevCommand(argv: string[], out: NodeJS.WritableStream): Promise<number> {
  void out;
  throw new SidecarError('ERR_CONFIG_INVALID', `unknown command 'dev ${argv[0] ?? ''}'`);
}

/** `spiffe-sidecar dev --help`. */
export function devHelpText(): string {
  return 'spiffe-sidecar dev: local helpers\n';
}
