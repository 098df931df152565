// SPIRE mode: our identity from the Workload API's FetchX509SVID stream. Each message is the full state
// and replaces the last (a federated bundle missing from a message is dropped, API §4.4); it is validated
// like file mode before it is used, and a malformed one is reported and ignored (the last good identity
// stays). The stream is kept open and re-opened with backoff; PermissionDenied on a live identity
// revokes it (fail closed). Never throws after start; startup waits in firstIdentity().
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { isSidecarError, SidecarError } from '../errors.js';
import type { Logger } from '../log.js';
import { type X509Bundle, x509BundleFromCertificates } from '../spiffe/bundle.js';
import { parseDerCertificates } from '../spiffe/certificate.js';
import { parseTrustDomain, quoteInput } from '../spiffe/id.js';
import { ExpiryWatch, chainNotAfter } from './expiry.js';
import {
  type IdentitySource,
  type IdentitySourceStats,
  type IdentityStatus,
  notifyAll,
  type X509Identity,
} from './source.js';
import { WorkloadApiClient } from './workload-api-client.js';
import type { X509SvidResponseMessage } from './workload-api-messages.js';
import type { WorkloadEndpoint } from './workload-endpoint.js';
import { assembleX509Identity } from './x509-identity.js';

export interface WorkloadApiSourceOptions {
  endpoint: WorkloadEndpoint;
  /** Use the SVID with this hint instead of the first (the default SVID). */
  hint?: string;
  log: Logger;
  /** Reconnect backoff: doubles from initialMs up to maxMs, resets after a good message. */
  backoff?: { initialMs: number; maxMs: number };
}

function messageError(why: string): SidecarError {
  return new SidecarError('ERR_WORKLOAD_API_MESSAGE', `Workload API X509SVIDResponse: ${why}`);
}

/** The SVID to use: the first one, or the first with the hint (duplicate hints: the first wins, API §5.2.1). */
function selectSvid(message: X509SvidResponseMessage, hint: string | undefined) {
  if (message.svids.length === 0) throw messageError('no SVIDs in response');
  const svid = hint === undefined ? message.svids[0] : message.svids.find((s) => s.hint === hint);
  if (!svid) throw messageError(`no SVID with hint ${quoteInput(hint ?? '')} in response`);
  for (const field of ['spiffe_id', 'x509_svid', 'x509_svid_key', 'bundle'] as const) {
    if (svid[field].length === 0) throw messageError(`mandatory field ${field} is empty`);
  }
  return svid;
}

/** Validates one FetchX509SVID message into an identity. Throws a SidecarError on any problem. */
export function parseX509SvidResponse(
  message: X509SvidResponseMessage,
  options: { hint?: string; expectedTrustDomain?: string; now?: Date } = {},
): X509Identity {
  const svid = selectSvid(message, options.hint);
  const label = `Workload API SVID ${quoteInput(svid.spiffe_id)}`;
  const chain = parseDerCertificates(svid.x509_svid, `${label} x509_svid`);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw new SidecarError('ERR_KEY_PARSE', `${label} x509_svid_key: not a PKCS#8 DER private key`, { cause: err });
  }
  const bundles = (ownTrustDomain: string) => {
    const set = new Map<string, X509Bundle>();
    const own = parseDerCertificates(svid.bundle, `${label} bundle`);
    set.set(ownTrustDomain, x509BundleFromCertificates(ownTrustDomain, own, `${label} bundle`));
    for (const [key, der] of Object.entries(message.federated_bundles)) {
      const td = parseTrustDomain(key);
      if (set.has(td)) throw messageError(`federated_bundles repeats trust domain "${td}"`);
      const source = `federated bundle of "${td}"`;
      // No bytes is an empty bundle (Trust Domain and Bundle §4.1.3: every SVID of that trust domain is refused),
      // as in file mode; SPIRE sends it for a federated trust domain without X.509 roots, and go-spiffe reads it so.
      const authorities = der.length === 0 ? [] : parseDerCertificates(der, source);
      set.set(td, x509BundleFromCertificates(td, authorities, source));
    }
    return set;
  };
  const identity = assembleX509Identity(
    { chain, key, bundles },
    { certLabel: label, keyLabel: `${label} key`, expectedTrustDomain: options.expectedTrustDomain, now: options.now },
  );
  if (identity.svid.id.toString() !== svid.spiffe_id) {
    throw messageError(
      `spiffe_id ${quoteInput(svid.spiffe_id)} is not the ID in its certificate ("${identity.svid.id}")`,
    );
  }
  return identity;
}

/** What makes a message new: every field of the selected SVID and every bundle (CRLs are not used yet). */
function fingerprintOf(message: X509SvidResponseMessage, hint: string | undefined): string {
  const svid = selectSvid(message, hint);
  const hash = createHash('sha256').update(svid.spiffe_id).update('\0').update(svid.x509_svid);
  hash.update(svid.x509_svid_key).update(svid.bundle);
  for (const key of Object.keys(message.federated_bundles).sort())
    hash.update(key).update(message.federated_bundles[key]);
  return hash.digest('hex');
}

/** gRPC codes after which retrying cannot help (Workload Endpoint §6; VERIFIER-RULES F9). */
const FATAL_CODES = new Set([GrpcStatus.INVALID_ARGUMENT, GrpcStatus.UNIMPLEMENTED]);

export class WorkloadApiIdentitySource implements IdentitySource {
  readonly kind = 'workload_api';
  readonly counters = { updated: 0, unchanged: 0, rejected: 0, reconnects: 0 };

  stats(): IdentitySourceStats {
    const { updated, unchanged, rejected, reconnects } = this.counters;
    return { updated, unchanged, failed: rejected, connected: this.connected, reconnects };
  }
  private readonly client: WorkloadApiClient;
  private readonly expiry: ExpiryWatch;
  private readonly listeners = new Set<(identity: X509Identity) => void>();
  private readonly revokeListeners = new Set<(identity: X509Identity) => void>();
  /** A stream is open and has delivered a message since it opened. */
  connected = false;
  private identity: X509Identity | undefined;
  private fingerprint: string | undefined;
  private call: ReturnType<WorkloadApiClient['fetchX509Svid']> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private openedAt = 0;
  /** The current stream delivered a message we accepted (resets the backoff). */
  private goodMessage = false;
  private revoked = false;
  private fatal: SidecarError | undefined;
  private closed = false;
  private readonly first: Promise<X509Identity>;
  private resolveFirst!: (identity: X509Identity) => void;
  private rejectFirst!: (err: Error) => void;

  get endpoint() {
    return this.options.endpoint;
  }

  private constructor(private readonly options: WorkloadApiSourceOptions) {
    this.client = new WorkloadApiClient(options.endpoint);
    this.expiry = new ExpiryWatch(options.log);
    this.first = new Promise((resolve, reject) => {
      this.resolveFirst = resolve;
      this.rejectFirst = reject;
    });
    this.first.catch(() => {}); // observed by firstIdentity(); never an unhandled rejection
  }

  /** Opens the stream and returns at once; the identity arrives asynchronously. */
  static start(options: WorkloadApiSourceOptions): WorkloadApiIdentitySource {
    const source = new WorkloadApiIdentitySource(options);
    source.connect();
    return source;
  }

  /** Resolves with the first valid identity; rejects if the source fails for good or is closed. */
  firstIdentity(): Promise<X509Identity> {
    return this.first;
  }

  current(): X509Identity {
    if (!this.identity) throw new SidecarError('ERR_NO_IDENTITY', 'no SVID has arrived from the Workload API yet');
    return this.identity;
  }

  status(): IdentityStatus {
    if (!this.identity) return { ready: false, reason: this.fatal ? 'workload_api_failed' : 'waiting_for_svid' };
    if (this.revoked) return { ready: false, reason: 'identity_revoked' };
    if (this.expiry.expired || Date.now() > chainNotAfter(this.identity)) {
      return { ready: false, reason: 'svid_expired' };
    }
    return { ready: true };
  }

  onUpdate(listener: (identity: X509Identity) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.call?.cancel();
    this.client.close();
    this.expiry.close();
    this.listeners.clear();
    this.rejectFirst(new SidecarError('ERR_NO_IDENTITY', 'closed before an SVID arrived from the Workload API'));
  }

  private connect(): void {
    if (this.closed) return;
    this.openedAt = Date.now();
    this.goodMessage = false;
    const call = this.client.fetchX509Svid();
    this.call = call;
    let ended = false;
    const end = (err: Partial<ServiceError> | undefined) => {
      if (ended) return;
      ended = true;
      this.onStreamEnd(err);
    };
    call.on('data', (message: X509SvidResponseMessage) => this.onMessage(message));
    call.on('error', (err: ServiceError) => end(err));
    call.on('end', () => end(undefined));
  }

  private onMessage(message: X509SvidResponseMessage): void {
    const { log, hint } = this.options;
    this.connected = true;
    let identity: X509Identity;
    let fingerprint: string;
    try {
      if (
        hint !== undefined &&
        this.identity &&
        message.svids.length > 0 &&
        !message.svids.some((s) => s.hint === hint)
      ) {
        // A valid message without our hinted SVID: the agent redacted it (API §5.2.1). Stop using it.
        this.revoke('the SVID with our hint was removed');
        return;
      }
      fingerprint = fingerprintOf(message, hint);
      if (fingerprint === this.fingerprint && !this.revoked) {
        this.counters.unchanged++;
        this.goodMessage = true;
        return;
      }
      identity = parseX509SvidResponse(message, { hint, expectedTrustDomain: this.identity?.svid.id.trustDomain });
    } catch (err) {
      const error = isSidecarError(err) ? err : messageError((err as Error).message);
      this.counters.rejected++;
      log.warn(
        {
          event: 'workload_api_update_rejected',
          reason: error.code,
          serial: this.identity?.svid.chain[0].serialNumber,
        },
        `Workload API update ignored, keeping the last good identity: ${error.message}`,
      );
      return;
    }
    this.identity = identity;
    this.fingerprint = fingerprint;
    this.revoked = false;
    this.goodMessage = true;
    this.counters.updated++;
    this.expiry.track(identity);
    const leaf = identity.svid.chain[0];
    log.info(
      {
        event: 'identity_updated',
        trigger: 'workload_api',
        spiffe_id: identity.svid.id.toString(),
        serial: leaf.serialNumber,
        not_after: leaf.notAfter.toISOString(),
        trust_domains: [...identity.bundles.keys()],
      },
      'identity updated',
    );
    this.resolveFirst(identity);
    notifyAll(this.listeners, identity, log);
  }

  private revoke(why: string): void {
    if (!this.identity || this.revoked) return;
    this.revoked = true;
    this.options.log.error(
      { event: 'identity_revoked', serial: this.identity.svid.chain[0].serialNumber },
      `our identity is revoked (${why}): new requests are refused until a new SVID arrives`,
    );
    notifyAll(this.revokeListeners, this.identity, this.options.log);
  }

  /** Called when our identity is revoked, so that open connections are closed too. */
  onRevoked(listener: () => void): () => void {
    this.revokeListeners.add(listener);
    return () => this.revokeListeners.delete(listener);
  }

  private onStreamEnd(err: Partial<ServiceError> | undefined): void {
    if (this.closed) return;
    this.connected = false;
    const { log, backoff = { initialMs: 1000, maxMs: 30_000 } } = this.options;
    const code = err?.code ?? GrpcStatus.OK;
    const codeName = GrpcStatus[code] ?? String(code);
    if (code === GrpcStatus.PERMISSION_DENIED && this.identity && !this.revoked) {
      // The agent no longer grants us this identity (API §5.2.1): stop using it, fail closed.
      this.revoke('the Workload API answered PermissionDenied');
    }
    if (FATAL_CODES.has(code) && !this.identity) {
      this.fatal = new SidecarError(
        'ERR_WORKLOAD_API',
        `the Workload API answered ${codeName}: ${err?.details ?? ''}; not retrying`,
      );
      log.error({ event: 'workload_api_failed', code: codeName, details: err?.details }, this.fatal.message);
      this.rejectFirst(this.fatal);
      return;
    }
    // Reconnect at once after a stream that lived and delivered an accepted message; otherwise back off
    // (initial, doubling, capped), so a flapping agent cannot make us spin. After startup even
    // InvalidArgument/Unimplemented are retried, at the slowest pace: rotation must not stop for good.
    if (this.goodMessage && Date.now() - this.openedAt >= 1000) this.failures = 0;
    const delay = FATAL_CODES.has(code)
      ? backoff.maxMs
      : this.failures === 0
        ? 0
        : Math.min(backoff.maxMs, backoff.initialMs * 2 ** (this.failures - 1));
    this.failures++;
    this.counters.reconnects++;
    log.warn(
      { event: 'workload_api_stream_ended', code: codeName, details: err?.details, retry_in_ms: delay },
      `Workload API stream ended (${codeName}); reconnecting`,
    );
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
