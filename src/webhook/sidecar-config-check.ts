// Would the injected sidecar start? The arguments and environment are parsed by the sidecar's own CLI
// and validated by its own buildConfig (which reads no file), so a combination it would refuse (an
// outbound route whose auth needs an identity this mode lacks, say) is an admission denial, not a
// crash-looping pod.
import { parseCommandLine } from '../cli.js';
import { buildConfig } from '../config.js';
import { SidecarError } from '../errors.js';

/** Throws a SidecarError with the sidecar's own message when it would refuse to start. */
export function checkSidecarConfig(args: readonly string[], env: readonly { name: string; value: string }[]): void {
  try {
    const command = parseCommandLine([...args], Object.fromEntries(env.map((e) => [e.name, e.value])));
    if (command.command !== 'run') throw new Error(`expected the run command, got ${command.command}`);
    buildConfig(command.options);
  } catch (err) {
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `the sidecar would refuse the configuration these annotations make: ${(err as Error).message.replace(/; see 'spiffe-sidecar run --help'$/, '')}`,
      { cause: err },
    );
  }
}
