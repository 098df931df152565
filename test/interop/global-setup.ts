// Builds every interop peer before the first scenario (one at a time: each build uses every core). A peer that
// cannot be built fails the run with the reason; nothing is skipped. While working on one scenario,
// INTEROP_PEERS=spire (a comma-separated list) builds only those; the scenarios that need another peer then build
// it themselves through buildPeer.
import buildDist from '../global-setup.js';
import { buildPeer } from './go-peers.js';

/** The peers the interop scenarios use (ghostunnel is the bench's). */
const ALL = ['go-spiffe', 'helm', 'spire'];

export default async function setup(): Promise<void> {
  // dist/ as `npm test` builds it, unless the caller has just built it from this tree (.ci/run, after npm test).
  if (process.env.INTEROP_DIST_BUILT !== '1') buildDist();
  const names = process.env.INTEROP_PEERS ? process.env.INTEROP_PEERS.split(',').filter(Boolean) : ALL;
  for (const name of names) {
    const peer = await buildPeer(name);
    process.stderr.write(
      `interop: ${name} ${peer.version} ${peer.built ? `built in ${peer.seconds} s` : `from the cache (first build took ${peer.seconds} s)`}\n`,
    );
  }
}
