// SPIRE mode's JWT-SVID bundles: the Workload API's FetchJWTBundles stream, where each message replaces
// the whole set (SPIFFE Workload API §6). Loaded only when JWT mode reads keys from the Workload API.
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { isSidecarError, SidecarError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseTrustDomain } from '../spiffe/id.js';
import type { JWKS } from '../spiffe/jwtsvid.js';
import type { JwtBundleSource } from './jwt-bundles.js';
import { parseJwksText } from './jwks.js';
import type { WorkloadApiClient } from './workload-api-client.js';
import type { JwtBundlesResponseMessage } from './workload-api-messages.js';

/** SPIRE mode: the FetchJWTBundles stream, re-opened with backoff like the X.509 stream. */
export class WorkloadApiJwtBundles implements JwtBundleSource {
  private bundles: ReadonlyMap<string, JWKS> | undefined;
  private call: ReturnType<WorkloadApiClient['fetchJwtBundles']> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;

  constructor(
    private readonly client: WorkloadApiClient,
    private readonly log: Logger,
    private readonly backoff = { initialMs: 1000, maxMs: 30_000 },
  ) {
    this.connect();
  }

  current(): ReadonlyMap<string, JWKS> | undefined {
    return this.bundles;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.call?.cancel();
  }

  private connect(): void {
    if (this.closed) return;
    const call = this.client.fetchJwtBundles();
    this.call = call;
    const openedAt = Date.now();
    let accepted = false;
    let ended = false;
    const end = (err?: Partial<ServiceError>) => {
      if (ended || this.closed) return;
      ended = true;
      const code = err?.code ?? GrpcStatus.OK;
      const codeName = GrpcStatus[code] ?? String(code);
      if (code === GrpcStatus.PERMISSION_DENIED && this.bundles !== undefined && this.bundles.size > 0) {
        // API §6.2.2: a client denied its bundles "SHOULD cease using" them. No bundle: every JWT-SVID is refused
        // until a message grants them again.
        this.bundles = new Map();
        this.log.warn(
          { event: 'jwt_bundles_revoked', rpc: 'FetchJWTBundles', code: codeName },
          'the Workload API denied our JWT bundles: every JWT-SVID is refused until it sends them again',
        );
      }
      const fatal = code === GrpcStatus.INVALID_ARGUMENT || code === GrpcStatus.UNIMPLEMENTED;
      if (fatal && this.bundles === undefined) {
        this.log.error(
          { event: 'workload_api_failed', rpc: 'FetchJWTBundles', code: codeName, details: err?.details },
          'not retrying',
        );
        return;
      }
      // As the X.509 stream: at once again only after a stream that lived a second and delivered an accepted
      // message; an agent that sends a good message and then one we cannot read must not make us spin. After
      // startup even InvalidArgument/Unimplemented are retried, at the slowest pace: key rotation must not stop.
      if (accepted && Date.now() - openedAt >= 1000) this.failures = 0;
      const delay = fatal
        ? this.backoff.maxMs
        : this.failures === 0
          ? 0
          : Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** (this.failures - 1));
      this.failures++;
      this.log.warn(
        {
          event: 'workload_api_stream_ended',
          rpc: 'FetchJWTBundles',
          code: codeName,
          details: err?.details,
          retry_in_ms: delay,
        },
        `Workload API JWT bundles stream ended (${codeName}); reconnecting`,
      );
      this.timer = setTimeout(() => this.connect(), delay);
    };
    call.on('data', (message: JwtBundlesResponseMessage) => {
      if (this.onMessage(message)) accepted = true;
    });
    call.on('error', (err: ServiceError) => end(err));
    call.on('end', () => end());
  }

  /** Whether the message was accepted. */
  private onMessage(message: JwtBundlesResponseMessage): boolean {
    try {
      const next = new Map<string, JWKS>();
      for (const [key, bytes] of Object.entries(message.bundles)) {
        const td = parseTrustDomain(key);
        if (next.has(td)) throw new SidecarError('ERR_WORKLOAD_API_MESSAGE', `JWT bundles repeat trust domain "${td}"`);
        next.set(td, parseJwksText(Buffer.from(bytes).toString('utf8'), `JWT bundle of "${td}"`));
      }
      this.bundles = next;
      this.log.info(
        { event: 'jwt_bundles_updated', trigger: 'workload_api', trust_domains: [...next.keys()] },
        'JWT bundles updated',
      );
      return true;
    } catch (err) {
      this.log.warn(
        {
          event: 'workload_api_update_rejected',
          rpc: 'FetchJWTBundles',
          reason: isSidecarError(err) ? err.code : 'ERR_WORKLOAD_API_MESSAGE',
        },
        `JWT bundles update ignored: ${(err as Error).message}`,
      );
      return false;
    }
  }
}
