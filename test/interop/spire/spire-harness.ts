// A real SPIRE deployment on loopback for the interop scenarios: spire-server (sqlite3 datastore, memory
// KeyManager, join_token node attestation) and spire-agent (attested with a join token, trusting the server's
// own bundle, the unix workload attestor), both SPIRE v1.13.3 as test/interop/go-peers.js builds them. Every
// workload of this machine's uid gets the SVIDs of every entry created here; each entry has its own hint, so
// one process (a sidecar) picks its SVID with --svid-hint while another (a caller) takes another.
//
// Registration entries are made with `spire-server entry create`, SVIDs read with `spire-agent api fetch`,
// exactly as an operator would. The processes run in their own process groups and are killed in close() (and
// when the test process exits, whatever happened).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../helpers/free-port.js';
import { buildPeer } from '../go-peers.js';
import { normalizeSerial } from '../../helpers/server-serial.js';

const run = promisify(execFile);

export const TRUST_DOMAIN = 'spire.test';
export const TRUST_DOMAIN_ID = `spiffe://${TRUST_DOMAIN}`;

/** Every SPIRE process this test process started, so that an aborted run still kills them on exit. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) killGroup(child, 'SIGKILL');
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** A SPIRE daemon: its output so far, and how it ended. */
export class SpireProcess {
  private output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    live.add(child);
    const append = (d: Buffer) => {
      this.output += d.toString();
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    this.exited = new Promise((resolve) =>
      child.on('close', (code, signal) => {
        live.delete(child);
        resolve({ code, signal });
      }),
    );
  }

  static start(name: string, bin: string, args: string[]): SpireProcess {
    // Its own process group (detached), so a kill reaches anything it started.
    const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    return new SpireProcess(name, child);
  }

  log(): string {
    return this.output;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Stops the process group with `signal`, then SIGKILL if it has not exited within 10 s. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return;
    killGroup(this.child, signal);
    const timer = setTimeout(() => killGroup(this.child, 'SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** An X509-SVID as `spire-agent api fetch x509 -write` wrote it. */
export interface FetchedSvid {
  spiffeId: string;
  /** svid.N.pem: the leaf, then intermediates (none here: the server's CA is a root) */
  chainPem: string;
  keyPem: string;
  /** bundle.N.pem: the trust bundle of our trust domain */
  bundlePem: string;
  /** lowercase hex without leading zero bytes (normalizeSerial) */
  serial: string;
}

export interface EntrySpec {
  /** our own entry ID (spire-server entry create -entryID), used to update and delete it */
  id: string;
  spiffeId: string;
  hint: string;
  x509SvidTtlSeconds?: number;
  federatesWith?: string[];
  /** DNS SANs (spire-server entry create -dns); changing them makes SPIRE issue a new SVID */
  dnsNames?: string[];
}

/** Polls `check` every 200 ms until it resolves true; fails with `what` and the last error after `timeoutMs`. */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${last})` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function spiffeIdOf(cert: X509Certificate): string {
  const uri = /URI:([^,\s]+)/.exec(cert.subjectAltName ?? '');
  if (!uri) throw new Error(`certificate ${cert.serialNumber} has no URI SAN`);
  return uri[1];
}

export class SpireDeployment {
  server!: SpireProcess;
  agent!: SpireProcess;
  /** The agent's SPIFFE ID: spiffe://spire.test/spire/agent/join_token/<token> */
  agentId = '';
  private serverPort = 0;
  private fetches = 0;

  private constructor(
    /** a short directory under /tmp: unix socket paths must stay under 108 bytes */
    readonly dir: string,
    readonly bin: { server: string; agent: string },
  ) {}

  get serverSocket(): string {
    return join(this.dir, 'server.sock');
  }

  get agentSocket(): string {
    return join(this.dir, 'agent.sock');
  }

  /** What the sidecar's --workload-api-socket takes. */
  get endpoint(): string {
    return `unix://${this.agentSocket}`;
  }

  /** Starts the server, makes a join token and the given entries (so the agent's first sync has them), then the agent. */
  static async start(entries: EntrySpec[] = []): Promise<SpireDeployment> {
    const peer = await buildPeer('spire');
    const dir = await mkdtemp('/tmp/spire-interop-');
    const spire = new SpireDeployment(dir, { server: peer.bin['spire-server'], agent: peer.bin['spire-agent'] });
    try {
      await spire.startServer();
      const token = (await spire.serverCli(['token', 'generate', '-ttl', '600'])).match(/Token: (\S+)/)?.[1];
      if (!token) throw new Error('spire-server token generate printed no token');
      spire.agentId = `${TRUST_DOMAIN_ID}/spire/agent/join_token/${token}`;
      for (const entry of entries) await spire.createEntry(entry);
      await spire.startAgent(token);
      return spire;
    } catch (err) {
      await spire.close();
      throw new Error(`${(err as Error).message}\n${spire.logs()}`, { cause: err });
    }
  }

  /** Starts the server on a free port; if another process took the port first, tries again with another. */
  private async startServer(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startServerOnce();
        return;
      } catch (err) {
        await this.server?.stop('SIGKILL');
        if (attempt === 3 || !/address already in use/.test(this.server?.log() ?? '')) throw err;
      }
    }
  }

  private async startServerOnce(): Promise<void> {
    this.serverPort = await freePort();
    const data = join(this.dir, 'server');
    await rm(data, { recursive: true, force: true });
    await mkdir(data);
    const config = join(this.dir, 'server.conf');
    await writeFile(
      config,
      `server {
  bind_address = "127.0.0.1"
  bind_port = "${this.serverPort}"
  socket_path = "${this.serverSocket}"
  trust_domain = "${TRUST_DOMAIN}"
  data_dir = "${data}"
  log_level = "DEBUG"
  experimental {
    # new and updated entries reach the agent within about a second, not 5
    cache_reload_interval = "1s"
  }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(data, 'datastore.sqlite3')}"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
`,
    );
    this.server = SpireProcess.start('spire-server', this.bin.server, ['run', '-config', config]);
    await this.waitHealthy(this.server, this.bin.server, this.serverSocket);
  }

  /** Starts (or restarts) the agent. The first start attests with the join token; later ones reuse the agent's SVID on disk. */
  async startAgent(joinToken?: string): Promise<void> {
    const data = join(this.dir, 'agent');
    await mkdir(data, { recursive: true });
    const bootstrap = join(this.dir, 'bootstrap.pem');
    // The agent authenticates the server with the server's own bundle (no insecure_bootstrap).
    await writeFile(bootstrap, await this.serverCli(['bundle', 'show']));
    const config = join(this.dir, 'agent.conf');
    await writeFile(
      config,
      `agent {
  data_dir = "${data}"
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "${this.serverPort}"
  socket_path = "${this.agentSocket}"
  trust_bundle_path = "${bootstrap}"
  trust_domain = "${TRUST_DOMAIN}"
  experimental {
    sync_interval = "1s"
  }
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data {
      directory = "${data}"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`,
    );
    const args = ['run', '-config', config];
    if (joinToken) args.push('-joinToken', joinToken);
    this.agent = SpireProcess.start('spire-agent', this.bin.agent, args);
    await this.waitHealthy(this.agent, this.bin.agent, this.agentSocket);
  }

  /** SIGKILL to the agent's process group: no goodbye on the Workload API streams. */
  async killAgent(): Promise<void> {
    await this.agent.stop('SIGKILL');
  }

  /** Waits for `healthcheck` to pass; fails at once if the daemon exits. */
  private async waitHealthy(proc: SpireProcess, bin: string, socket: string): Promise<void> {
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (!proc.running) throw new Error(`${proc.name} exited before it was healthy:\n${proc.log()}`);
      try {
        await run(bin, ['healthcheck', '-socketPath', socket], { timeout: 10_000 });
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${proc.name} not healthy within 90 s: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Runs `spire-server <args> -socketPath …` and returns its stdout; throws with its stderr on failure. */
  async serverCli(args: string[]): Promise<string> {
    return cli(this.bin.server, [...args, '-socketPath', this.serverSocket]);
  }

  async agentCli(args: string[]): Promise<string> {
    return cli(this.bin.agent, [...args, '-socketPath', this.agentSocket]);
  }

  private entryFlags(entry: EntrySpec): string[] {
    return [
      '-entryID',
      entry.id,
      '-parentID',
      this.agentId,
      '-spiffeID',
      entry.spiffeId,
      '-selector',
      `unix:uid:${process.getuid!()}`,
      '-hint',
      entry.hint,
      ...(entry.x509SvidTtlSeconds ? ['-x509SVIDTTL', String(entry.x509SvidTtlSeconds)] : []),
      ...(entry.federatesWith ?? []).flatMap((td) => ['-federatesWith', td]),
      ...(entry.dnsNames ?? []).flatMap((name) => ['-dns', name]),
    ];
  }

  async createEntry(entry: EntrySpec): Promise<void> {
    await this.serverCli(['entry', 'create', ...this.entryFlags(entry)]);
  }

  /** `entry update` replaces the whole entry: give every field again. */
  async updateEntry(entry: EntrySpec): Promise<void> {
    await this.serverCli(['entry', 'update', ...this.entryFlags(entry)]);
  }

  async deleteEntry(id: string): Promise<void> {
    await this.serverCli(['entry', 'delete', '-entryID', id]);
  }

  /** `spire-server bundle set` for another trust domain (PEM). */
  async setBundle(trustDomainId: string, pem: string): Promise<void> {
    const file = join(this.dir, `bundle-${trustDomainId.replace(/\W+/g, '_')}.pem`);
    await writeFile(file, pem);
    await this.serverCli(['bundle', 'set', '-id', trustDomainId, '-path', file]);
  }

  /** One `spire-agent api fetch x509 -write DIR`: every SVID this uid gets, by SPIFFE ID. */
  async fetchX509(): Promise<Map<string, FetchedSvid>> {
    const out = join(this.dir, `fetch-${this.fetches++}`);
    await mkdir(out);
    try {
      await this.agentCli(['api', 'fetch', 'x509', '-write', out, '-silent']);
      const svids = new Map<string, FetchedSvid>();
      const files = await readdir(out);
      for (const file of files.filter((f) => /^svid\.\d+\.pem$/.test(f))) {
        const n = file.split('.')[1];
        const chainPem = await readFile(join(out, file), 'utf8');
        const leaf = new X509Certificate(chainPem);
        const spiffeId = spiffeIdOf(leaf);
        svids.set(spiffeId, {
          spiffeId,
          chainPem,
          keyPem: await readFile(join(out, `svid.${n}.key`), 'utf8'),
          bundlePem: await readFile(join(out, `bundle.${n}.pem`), 'utf8'),
          serial: normalizeSerial(leaf.serialNumber),
        });
      }
      return svids;
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }

  /** Fetches until the agent serves an SVID for `spiffeId` (a new entry takes a sync or two to arrive). */
  waitForSvid(spiffeId: string, timeoutMs = 60_000): Promise<FetchedSvid> {
    return this.waitForSvidWhere(spiffeId, () => true, timeoutMs);
  }

  /** Fetches until the agent serves an SVID for `spiffeId` that `accept` takes (a re-issued one, say). */
  async waitForSvidWhere(
    spiffeId: string,
    accept: (svid: FetchedSvid) => boolean,
    timeoutMs = 60_000,
  ): Promise<FetchedSvid> {
    let found: FetchedSvid | undefined;
    await eventually(
      `the agent serves an X509-SVID for ${spiffeId} that the test accepts`,
      async () => {
        const svid = (await this.fetchX509()).get(spiffeId);
        if (svid && accept(svid)) found = svid;
        return found !== undefined;
      },
      timeoutMs,
    );
    return found!;
  }

  /** `spire-agent api fetch jwt -audience AUD -spiffeID ID`: the JWT-SVID the agent mints for that entry. */
  async fetchJwt(audience: string, spiffeId: string): Promise<string> {
    const out = await this.agentCli(['api', 'fetch', 'jwt', '-audience', audience, '-spiffeID', spiffeId]);
    const token = new RegExp(`token\\(${spiffeId.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\):\\s+(\\S+)`).exec(
      out,
    )?.[1];
    if (!token) throw new Error(`spire-agent api fetch jwt printed no token for ${spiffeId}: ${out}`);
    return token;
  }

  /** Both daemons' output, for a failure message. */
  logs(): string {
    const tail = (p: SpireProcess | undefined) => (p ? p.log().split('\n').slice(-60).join('\n') : '(not started)');
    return `--- spire-server (last lines) ---\n${tail(this.server)}\n--- spire-agent (last lines) ---\n${tail(this.agent)}`;
  }

  async close(): Promise<void> {
    await this.agent?.stop();
    await this.server?.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function cli(bin: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(bin, args, { timeout: 30_000 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`${bin.split('/').pop()} ${args.join(' ')} failed: ${(e.stderr || e.stdout || e.message).trim()}`);
  }
}
