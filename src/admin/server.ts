// The admin listener: plain HTTP on its own port, never on the data path. /healthz (the process is
// alive), /readyz (it can serve: identity ready, not draining, the app reachable if required), /metrics
// (Prometheus), /certs (what we serve and trust), with --api-keys-file /api-keys (each key's name, id,
// dates and last use; never a key or its digest) and, when identity assertions are on,
// /.well-known/jwks.json (the key apps check them with). GET and HEAD only; a document that cannot be had
// (a worker that does not answer) is a 503.
import type { Server } from 'node:http';
import { nodeHttp } from '../node-http.js';
import type { AddressInfo } from 'node:net';
import { chainNotAfter } from '../identity/expiry.js';
import type { IdentitySource } from '../identity/source.js';
import { closeNow, listen } from '../listener.js';

/**
 * Bounds: kubelet's probes and a Prometheus scrape need a few connections, each answered in milliseconds. On an
 * injected pod the listener is on the pod network; with Node's defaults, connections that sent nothing (or one
 * byte) were held for good, and 2,000 of them took the file descriptors the data path needed (a review).
 */
const MAX_CONNECTIONS = 128;
const IDLE_MS = 10_000;
const REQUEST_MS = 10_000;

export interface Readiness {
  ready: boolean;
  reason?: string;
}

export interface AdminOptions {
  host: string;
  port: number;
  registry: { metrics(): Promise<string>; readonly contentType: string };
  identity: IdentitySource | undefined;
  source: 'files' | 'workload-api' | 'none';
  readiness: () => Promise<Readiness>;
  /** The /certs document, when it is not this process's to tell (`--workers`: a worker's). */
  certs?: () => Promise<object>;
  /** `--api-keys-file`: the /api-keys document; without it /api-keys is 404 like any unknown path. */
  apiKeys?: () => object | Promise<object>;
  /** The identity-assertion JWKS; without it /.well-known/jwks.json is 404 like any unknown path. */
  assertionJwks?: () => object;
}

const JWKS_PATH = '/.well-known/jwks.json';
const API_KEYS_PATH = '/api-keys';

/** The /certs document: our SVID and, per trust domain, how many authorities we trust. */
export function certsDocument(identity: IdentitySource | undefined, source: string): object {
  if (
    !identity ||
    identity.status().reason === 'waiting_for_svid' ||
    identity.status().reason === 'workload_api_failed'
  ) {
    return { source, svid: null, bundles: [] };
  }
  const { svid, bundles } = identity.current();
  const leaf = svid.chain[0];
  return {
    source,
    svid: {
      spiffe_id: svid.id.toString(),
      serial: leaf.serialNumber,
      not_before: leaf.notBefore.toISOString(),
      not_after: leaf.notAfter.toISOString(),
      chain_not_after: new Date(chainNotAfter(identity.current())).toISOString(),
      chain_length: svid.chain.length,
    },
    bundles: [...bundles.values()].map((b) => ({
      trust_domain: b.trustDomain,
      authorities: b.authorities.length,
      // PEM and Workload API X.509 bundles carry no spiffe_sequence.
      sequence: null,
    })),
  };
}

export class AdminServer {
  private constructor(private readonly server: Server) {}

  static async start(options: AdminOptions): Promise<AdminServer> {
    const endpoints = [
      '/healthz',
      '/readyz',
      '/metrics',
      '/certs',
      ...(options.apiKeys ? [API_KEYS_PATH] : []),
      ...(options.assertionJwks ? [JWKS_PATH] : []),
    ];
    const server = nodeHttp.createServer({ headersTimeout: REQUEST_MS, requestTimeout: REQUEST_MS }, (req, res) => {
      const path = (req.url ?? '/').split('?', 1)[0];
      const send = (status: number, type: string, body: string, cacheControl = 'no-store') => {
        res.writeHead(status, { 'content-type': type, 'cache-control': cacheControl });
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      const json = (status: number, body: object) => send(status, 'application/json', JSON.stringify(body));
      const notFound = () => json(404, { error: 'not_found', endpoints });
      if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method_not_allowed' });
      switch (path) {
        case '/healthz':
          return json(200, { alive: true });
        case '/readyz':
          options.readiness().then(
            (r) => json(r.ready ? 200 : 503, r),
            (err: Error) => json(503, { ready: false, reason: err.message }),
          );
          return;
        case '/metrics':
          options.registry.metrics().then(
            (text) => send(200, options.registry.contentType, text),
            (err: Error) => json(500, { error: err.message }),
          );
          return;
        case '/certs':
          if (!options.certs) return json(200, certsDocument(options.identity, options.source));
          options.certs().then(
            (doc) => json(200, doc),
            (err: Error) => json(503, { error: err.message }),
          );
          return;
        case API_KEYS_PATH: {
          if (!options.apiKeys) return notFound();
          const apiKeys = options.apiKeys;
          // A document built here, or asked of the workers: either way a failure answers, never hangs.
          new Promise<object>((resolve) => resolve(apiKeys())).then(
            (doc) => json(200, doc),
            (err: Error) => json(503, { error: err.message }),
          );
          return;
        }
        case JWKS_PATH:
          if (!options.assertionJwks) return notFound();
          // A minute of caching: the key lives as long as the process, and an app refetches on an unknown kid.
          return send(200, 'application/json', JSON.stringify(options.assertionJwks()), 'max-age=60');
        default:
          return notFound();
      }
    });
    server.maxConnections = MAX_CONNECTIONS;
    // A socket idle this long (nothing sent, or a request begun and left) is destroyed: no 'timeout' listener.
    server.setTimeout(IDLE_MS);
    server.keepAliveTimeout = 5_000;
    await listen(server, options.host, options.port, '--admin-listen');
    return new AdminServer(server);
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    await closeNow(this.server);
  }
}
