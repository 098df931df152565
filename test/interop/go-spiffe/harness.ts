// The go-spiffe side of the interop scenarios: our Go program (test/interop/go, go-spiffe v2.9.0) run as a real
// process. One-shot commands print one JSON result; the server prints one JSON line per event, and a test waits
// for the event it needs (never for a fixed time).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { promisify } from 'node:util';
import { buildPeer } from '../go-peers.js';
import type { Running } from '../../helpers/process.js';

const run = promisify(execFile);

/** The spiffe-interop binary (built by the global setup; from the cache here). */
export async function interopBin(): Promise<string> {
  const peer = await buildPeer('go-spiffe');
  return peer.bin['spiffe-interop'];
}

/** Runs a one-shot command (client, verify-x509, verify-jwt, make-certs) and returns its JSON result. */
export async function runInterop<T>(args: string[], timeoutMs = 30_000): Promise<T> {
  const bin = await interopBin();
  try {
    const { stdout } = await run(bin, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return JSON.parse(stdout) as T;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`spiffe-interop ${args[0]} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
}

export interface Verdict {
  ok: boolean;
  id?: string;
  error?: string;
}

/** `spiffe-interop verify-x509`: x509svid.ParseAndVerify, and x509svid.Parse when a key is given. */
export interface X509Result {
  verify: Verdict;
  parse?: Verdict;
}

/** `spiffe-interop verify-jwt`: jwtsvid.ParseAndValidate. */
export interface JwtResult extends Verdict {
  audience?: string[];
  expiry?: string;
  claims?: Record<string, unknown>;
}

/** `spiffe-interop client`: one request over go-spiffe mTLS, or the Go-side error. */
export interface ClientResult {
  ok: boolean;
  peer_id?: string;
  status?: number;
  headers?: Record<string, string[]>;
  body?: string;
  error?: string;
}

/** The echo app's JSON body (test/helpers/echo-app.ts), as a caller sees it. */
export interface Echoed {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

/** `-bundle TD=FILE` flags. */
export function bundleArgs(bundles: Record<string, string>): string[] {
  return Object.entries(bundles).flatMap(([td, file]) => ['-bundle', `${td}=${file}`]);
}

export interface ServerEvent {
  event: 'ready' | 'request' | 'tls_error' | 'http_log';
  port?: number;
  id?: string;
  peer_id?: string;
  method?: string;
  path?: string;
  error?: string;
}

export interface GoServer {
  port: number;
  /** Every event so far, in order. */
  events: ServerEvent[];
  /** Resolves with the first event (past or future) that matches; rejects if the server exits first. */
  waitFor(match: (e: ServerEvent) => boolean, timeoutMs?: number): Promise<ServerEvent>;
  stop(): Promise<void>;
}

/** Starts `spiffe-interop server` and resolves once it listens. */
export async function startGoServer(args: string[]): Promise<GoServer> {
  const child: ChildProcess = spawn(await interopBin(), ['server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: ServerEvent[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  let exited = false;
  const done = new Promise<void>((resolve) =>
    child.on('close', () => {
      exited = true;
      for (const wake of waiters) wake();
      resolve();
    }),
  );
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    let nl = pending.indexOf('\n');
    while (nl !== -1) {
      events.push(JSON.parse(pending.slice(0, nl)) as ServerEvent);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const waitFor = (match: (e: ServerEvent) => boolean, timeoutMs = 20_000) =>
    new Promise<ServerEvent>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`go-spiffe server: no matching event in ${timeoutMs} ms; events ${JSON.stringify(events)}`));
      }, timeoutMs);
      const check = () => {
        const found = events.find(match);
        if (found || exited) {
          clearTimeout(timer);
          waiters.delete(check);
          if (found) resolve(found);
          else reject(new Error(`go-spiffe server exited: ${stderr}`));
        }
      };
      waiters.add(check);
      check();
    });
  try {
    const ready = await waitFor((e) => e.event === 'ready');
    return {
      port: ready.port!,
      events,
      waitFor,
      stop: async () => {
        if (!exited) child.kill('SIGTERM');
        await done;
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    await done;
    throw err;
  }
}

/** A plain HTTP GET on loopback (an app calling its sidecar's outbound listener). */
export function plainGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Stops a sidecar process (SIGTERM) and waits for it to exit. */
export async function stopSidecar(running: Running | undefined): Promise<void> {
  if (!running) return;
  if (running.child.exitCode === null && running.child.signalCode === null) running.child.kill('SIGTERM');
  await running.exited;
}
