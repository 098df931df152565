// JWT-SVID bundles (JWKS per trust domain): from files (`--jwt-bundle-file TD=FILE`, reloaded like the
// PEM files, a broken file keeps its last good bundle) or from the Workload API's FetchJWTBundles stream
// (each message replaces the set). `current()` returns a new Map object on every change, so results
// cached against the old one are invalidated.
import { readFile } from 'node:fs/promises';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { isSidecarError, SidecarError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseTrustDomain } from '../spiffe/id.js';
import type { JWKS } from '../spiffe/jwtsvid.js';
import { parseJwksText } from './jwks.js';
import type { JwtBundlesResponseMessage, WorkloadApiClient } from './workload-api-client.js';

export interface JwtBundleSource {
  /** Bundles by trust domain name; undefined until the first set arrived. */
  current(): ReadonlyMap<string, JWKS> | undefined;
  close(): Promise<void>;
}

export interface JwtBundleFile {
  trustDomain: string;
  file: string;
}

export class JwtBundleFiles implements JwtBundleSource {
  private bundles: ReadonlyMap<string, JWKS>;
  private texts: string[];

  private constructor(
    readonly files: readonly JwtBundleFile[],
    texts: string[],
    bundles: ReadonlyMap<string, JWKS>,
    private readonly log: Logger,
  ) {
    this.texts = texts;
    this.bundles = bundles;
  }

  /** Loads every file; at startup any problem is an error naming the flag and the file. */
  static async open(files: readonly JwtBundleFile[], log: Logger): Promise<JwtBundleFiles> {
    const texts = await Promise.all(files.map((f) => readBundle(f)));
    const bundles = new Map(files.map((f, i) => [f.trustDomain, parseJwksText(texts[i], label(f))]));
    return new JwtBundleFiles(files, texts, bundles, log);
  }

  current(): ReadonlyMap<string, JWKS> {
    return this.bundles;
  }

  /** Re-reads the files; a file that fails keeps its last good bundle (logged). */
  async reload(trigger: string): Promise<void> {
    const next = new Map(this.bundles);
    let changed = false;
    await Promise.all(
      this.files.map(async (f, i) => {
        try {
          const text = await readBundle(f);
          if (text === this.texts[i]) return;
          next.set(f.trustDomain, parseJwksText(text, label(f)));
          this.texts[i] = text;
          changed = true;
        } catch (err) {
          this.log.warn(
            { event: 'reload_failed', trigger, reason: isSidecarError(err) ? err.code : 'ERR_FILE_READ', file: f.file },
            `JWT bundle reload failed, keeping the last good one: ${(err as Error).message}`,
          );
        }
      }),
    );
    if (!changed) return;
    this.bundles = next;
    this.log.info({ event: 'jwt_bundles_updated', trigger, trust_domains: [...next.keys()] }, 'JWT bundles updated');
  }

  async close(): Promise<void> {}
}

function label(f: JwtBundleFile): string {
  return `--jwt-bundle-file ${f.trustDomain}=${f.file}`;
}

async function readBundle(f: JwtBundleFile): Promise<string> {
  try {
    return await readFile(f.file, 'utf8');
  } catch (err) {
    throw new SidecarError(
      'ERR_FILE_READ',
      `${label(f)}: cannot read the file (${(err as NodeJS.ErrnoException).code})`,
      {
        cause: err,
      },
    );
  }
}

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
    let ended = false;
    const end = (err?: Partial<ServiceError>) => {
      if (ended || this.closed) return;
      ended = true;
      const code = err?.code ?? GrpcStatus.OK;
      if (code === GrpcStatus.INVALID_ARGUMENT || code === GrpcStatus.UNIMPLEMENTED) {
        this.log.error(
          { event: 'workload_api_failed', rpc: 'FetchJWTBundles', code: GrpcStatus[code] },
          'not retrying',
        );
        return;
      }
      const delay =
        this.failures === 0 ? 0 : Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** (this.failures - 1));
      this.failures++;
      this.timer = setTimeout(() => this.connect(), delay);
    };
    call.on('data', (message: JwtBundlesResponseMessage) => this.onMessage(message));
    call.on('error', (err: ServiceError) => end(err));
    call.on('end', () => end());
  }

  private onMessage(message: JwtBundlesResponseMessage): void {
    try {
      const next = new Map<string, JWKS>();
      for (const [key, bytes] of Object.entries(message.bundles)) {
        const td = parseTrustDomain(key);
        if (next.has(td)) throw new SidecarError('ERR_WORKLOAD_API_MESSAGE', `JWT bundles repeat trust domain "${td}"`);
        next.set(td, parseJwksText(Buffer.from(bytes).toString('utf8'), `JWT bundle of "${td}"`));
      }
      this.bundles = next;
      this.failures = 0;
      this.log.info(
        { event: 'jwt_bundles_updated', trigger: 'workload_api', trust_domains: [...next.keys()] },
        'JWT bundles updated',
      );
    } catch (err) {
      this.log.warn(
        {
          event: 'workload_api_update_rejected',
          rpc: 'FetchJWTBundles',
          reason: isSidecarError(err) ? err.code : 'ERR_WORKLOAD_API_MESSAGE',
        },
        `JWT bundles update ignored: ${(err as Error).message}`,
      );
    }
  }
}
