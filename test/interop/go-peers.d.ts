// Types for go-peers.js (plain JavaScript so the bench can use it too).
export interface BuiltPeer {
  name: string;
  /** module@version, or our own module for the go-spiffe programs */
  version: string;
  /** binary name → absolute path */
  bin: Record<string, string>;
  /** true when this call built it, false when it came from the cache */
  built: boolean;
  /** how long the build took, in seconds (the first time, on this machine) */
  seconds: number;
}
export const PEERS: Record<
  string,
  | { module: string; version: string; packages: Record<string, string>; linkerVars?: Record<string, string> }
  | { local: string; packages: Record<string, string> }
>;
export function cacheRoot(): string;
export function goVersion(): Promise<string>;
export function peerDir(name: string): Promise<string>;
export function buildPeer(name: string, say?: (line: string) => void): Promise<BuiltPeer>;
