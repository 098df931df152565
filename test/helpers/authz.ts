// Shared pieces of the policy and API key tests: fresh API keys and their lines, policy files on disk and
// the errors they are refused with, the audit lines a sidecar logged, and counters read from a /metrics scrape.
import { writeFile } from 'node:fs/promises';
import { request as httpsRequest, Agent } from 'node:https';
import { join } from 'node:path';
import { expect } from 'vitest';
import { apiKeyNew } from '../../src/authn/api-key-commands.js';
import { newApiKey, parseApiKeys } from '../../src/authn/api-keys.js';
import { parsePolicy } from '../../src/authz/policy-file.js';
import { SidecarError } from '../../src/errors.js';
import type { ClientCert, Response } from './client.js';

/** A fresh key and its `--api-keys-file` line (`fields`: `expires=…`, `route=…`). */
export function apiKey(name: string, ...fields: string[]): { key: string; line: string } {
  const { key, sha256 } = newApiKey();
  return { key, line: [`sha256:${sha256}`, name, ...fields].join(' ') };
}

/** A key made by `apikey new` (`options` as the command takes them: name, prefix, route...) and the line it prints. */
export function printedApiKey(options: Parameters<typeof apiKeyNew>[0]): { key: string; line: string } {
  const out = apiKeyNew(options);
  return { key: /^key: {2}(\S+)$/m.exec(out)?.[1] as string, line: /^line: (.+)$/m.exec(out)?.[1] as string };
}

/** Writes a policy document (an object as JSON, or YAML text) and returns its path. */
export async function writePolicy(dir: string, name: string, doc: object | string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof doc === 'string' ? doc : JSON.stringify(doc, null, 2));
  return path;
}

/** The SidecarError that `parse` throws; fails the test if `what` is accepted. */
function refusalOf(parse: () => unknown, what: string): SidecarError {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    return err as SidecarError;
  }
  throw new Error(`${what} was accepted`);
}

/** The ERR_POLICY_INVALID that a policy file (`text`, named `label`) is refused with. */
export function policyRefusal(text: string, label: string): SidecarError {
  const err = refusalOf(() => parsePolicy(text, label), 'the policy');
  expect(err.code).toBe('ERR_POLICY_INVALID');
  return err;
}

/** The error that an --api-keys-file (`text`, named `label`) is refused with. */
export function apiKeysRefusal(text: string, label: string): SidecarError {
  return refusalOf(() => parseApiKeys(text, label), 'the file');
}

/** The `authz` audit lines logged since `from`. */
export function audits(logs: readonly Record<string, unknown>[], from = 0): Record<string, unknown>[] {
  return logs.slice(from).filter((l) => l.event === 'authz');
}

/**
 * The last `authz` line for this method and path logged at or after index `from`, waited for (bounded): the
 * access line is written when the exchange is over, which may be just after the caller has its answer. Read
 * `from` (`logs.length`) before sending the request when an earlier one had the same method and path.
 */
export async function lastAudit(
  logs: readonly Record<string, unknown>[],
  method: string,
  path: string,
  from = 0,
  timeout = 5000,
): Promise<Record<string, unknown>> {
  let found: Record<string, unknown> | undefined;
  await expect
    .poll(
      () =>
        (found = audits(logs, from)
          .reverse()
          .find((l) => l.method === method && l.path === path)),
      { timeout, interval: 10 },
    )
    .toBeDefined();
  return found!;
}

/** Waits (bounded) until `count` `authz` lines have been logged since `from`; returns them. */
export async function auditsAtLeast(
  logs: readonly Record<string, unknown>[],
  count: number,
  from = 0,
  timeout = 5000,
): Promise<Record<string, unknown>[]> {
  await expect.poll(() => audits(logs, from).length, { timeout, interval: 10 }).toBeGreaterThanOrEqual(count);
  return audits(logs, from);
}

/** Waits until a log line after `from` has every field of `match`; returns it. */
export async function waitForLog(
  logs: readonly Record<string, unknown>[],
  match: Record<string, unknown>,
  from = 0,
  timeout = 5000,
): Promise<Record<string, unknown>> {
  let found: Record<string, unknown> | undefined;
  await expect
    .poll(() => (found = logs.slice(from).find((l) => Object.entries(match).every(([k, v]) => l[k] === v))), {
      timeout,
      interval: 20,
    })
    .toBeDefined();
  return found!;
}

/** A scrape of the admin listener's /metrics. */
export async function scrapeMetrics(adminPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/**
 * The sum of the samples of `name` whose labels include `labels` (0 when none): a sample with more labels
 * (e.g. `auth`) counts toward the one the test names.
 */
export function sample(scrape: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of scrape.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.indexOf('} ');
    const have = line.slice(name.length + 1, close).split(',');
    if (wanted.every((w) => have.includes(w))) sum += Number(line.slice(close + 2));
  }
  return sum;
}

/** `spiffe_sidecar_authz_decisions_total{decision,reason}`. */
export function decisions(scrape: string, decision: 'allow' | 'deny' | 'dry_run_deny', reason: string): number {
  return sample(scrape, 'spiffe_sidecar_authz_decisions_total', { decision, reason });
}

/**
 * Sequential HTTPS requests over ONE kept-alive TLS connection (with a client certificate, or none):
 * each answer with whether it came over the reused connection.
 */
export async function onOneConnection(
  port: number,
  cert: ClientCert | undefined,
  requests: { method?: string; path: string; headers?: Record<string, string> }[],
): Promise<(Response & { reused: boolean })[]> {
  const agent = new Agent({
    keepAlive: true,
    maxSockets: 1,
    rejectUnauthorized: false,
    cert: cert?.chainPem,
    key: cert?.keyPem,
  });
  const out: (Response & { reused: boolean })[] = [];
  try {
    for (const r of requests) {
      out.push(
        await new Promise((resolve, reject) => {
          const options = {
            host: '127.0.0.1',
            port,
            method: r.method ?? 'GET',
            path: r.path,
            headers: r.headers,
            agent,
          };
          const req = httpsRequest(options, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: Buffer.concat(chunks).toString(),
                reused: req.reusedSocket,
              }),
            );
            res.on('error', reject);
          });
          req.on('error', reject);
          req.end();
        }),
      );
    }
  } finally {
    agent.destroy();
  }
  return out;
}
