// A SPIFFE Workload API server for tests: real gRPC over a real Unix socket, using our proto. Faithful to
// the spec where the sidecar depends on it: calls without the `workload.spiffe.io: true` header get
// InvalidArgument; every X.509 message is the full state; an unregistered workload gets PermissionDenied
// ("no identity issued"); the server can push rotations, change federated bundles, push malformed
// messages, revoke, be killed and restarted on the same socket.
import { rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { IssuedCertificate } from '../../src/certs/dev-ca.js';
import { SECURITY_HEADER } from '../../src/identity/workload-api-client.js';
import { workloadApiDefinition } from '../../src/identity/workload-api-definition.js';
import type { JwtSvidMessage, X509SvidResponseMessage } from '../../src/identity/workload-api-messages.js';

/** What one SVID entry says, before encoding. */
export interface ServedSvid {
  spiffeId: string;
  svid: Pick<IssuedCertificate, 'chainPem' | 'keyPem'>;
  /** PEM of the SVID's trust domain bundle. */
  bundlePem: string;
  hint?: string;
}

export interface X509State {
  svids: ServedSvid[];
  /** PEM bundles of other trust domains, keyed by `spiffe://td` (as SPIRE sends them). */
  federated?: Record<string, string>;
}

/** PEM → concatenated DER, as the Workload API carries certificates. */
export function pemToDer(pem: string): Buffer {
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z ]+)-----([^-]+)-----END \1-----/g)];
  return Buffer.concat(blocks.map((b) => Buffer.from(b[2].replace(/\s+/g, ''), 'base64')));
}

export function encodeX509(state: X509State): X509SvidResponseMessage {
  return {
    svids: state.svids.map((s) => ({
      spiffe_id: s.spiffeId,
      x509_svid: pemToDer(s.svid.chainPem),
      x509_svid_key: pemToDer(s.svid.keyPem),
      bundle: pemToDer(s.bundlePem),
      hint: s.hint ?? '',
    })),
    crl: [],
    federated_bundles: Object.fromEntries(
      Object.entries(state.federated ?? {}).map(([td, pem]) => [td, pemToDer(pem)]),
    ),
  };
}

type X509Stream = grpc.ServerWritableStream<unknown, X509SvidResponseMessage>;
type JwtBundleStream = grpc.ServerWritableStream<unknown, { bundles: Record<string, Buffer> }>;

export class TestWorkloadApi {
  /** Every call, with the security header values it carried. */
  readonly calls: { method: string; header: string[] }[] = [];
  registered: boolean;
  /** The next FetchX509SVID calls fail with this status (then it is cleared). */
  failNextWith: { code: grpc.status; details: string } | undefined;
  jwtSvids: (audience: string[], spiffeId: string) => JwtSvidMessage[] = () => [];
  private x509: X509SvidResponseMessage | undefined;
  private jwtBundles: Record<string, Buffer> = {};
  private readonly x509Streams = new Set<X509Stream>();
  private readonly jwtBundleStreams = new Set<JwtBundleStream>();
  private server: grpc.Server | undefined;

  private constructor(
    readonly socketPath: string,
    registered: boolean,
  ) {
    this.registered = registered;
  }

  static async start(socketPath: string, options: { registered?: boolean } = {}): Promise<TestWorkloadApi> {
    const api = new TestWorkloadApi(socketPath, options.registered ?? true);
    await api.listen();
    return api;
  }

  get address(): string {
    return `unix://${this.socketPath}`;
  }

  get openX509Streams(): number {
    return this.x509Streams.size;
  }

  /** Sets the X.509 state and pushes it, whole, to every open stream. */
  setX509(state: X509State): void {
    this.pushRaw(encodeX509(state));
  }

  /** Pushes a message as is (a malformed one, say); it also becomes what new streams get first. */
  pushRaw(message: X509SvidResponseMessage): void {
    this.x509 = message;
    if (this.registered) for (const stream of this.x509Streams) stream.write(message);
  }

  setJwtBundles(bundles: Record<string, object>): void {
    this.jwtBundles = Object.fromEntries(
      Object.entries(bundles).map(([td, jwks]) => [td, Buffer.from(JSON.stringify(jwks))]),
    );
    for (const stream of this.jwtBundleStreams) stream.write({ bundles: this.jwtBundles });
  }

  /** Registers the workload: open and new streams get the current state. */
  register(): void {
    this.registered = true;
    if (this.x509) for (const stream of this.x509Streams) stream.write(this.x509);
  }

  /** Deregisters it: open streams (X.509 and JWT bundles) end with PermissionDenied, as SPIRE does when entries are deleted. */
  unregister(): void {
    this.registered = false;
    for (const stream of [...this.x509Streams, ...this.jwtBundleStreams]) this.deny(stream);
    this.x509Streams.clear();
    this.jwtBundleStreams.clear();
  }

  /** Ends the open JWT bundle streams with this status (an agent's error); new streams are served as before. */
  endJwtBundleStreams(code: grpc.status, details: string): void {
    for (const stream of this.jwtBundleStreams) stream.emit('error', { code, details });
    this.jwtBundleStreams.clear();
  }

  /** The agent dies: every stream breaks, the socket goes away. */
  async kill(): Promise<void> {
    this.server?.forceShutdown();
    this.server = undefined;
    this.x509Streams.clear();
    this.jwtBundleStreams.clear();
    await rm(this.socketPath, { force: true });
  }

  /** The agent comes back on the same socket, with the state it had. */
  async restart(): Promise<void> {
    await this.kill();
    await this.listen();
  }

  async close(): Promise<void> {
    await this.kill();
  }

  private deny(call: grpc.ServerWritableStream<unknown, unknown>): void {
    call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' });
  }

  /** The spec's security check; false (and the call answered) if the header is missing or wrong. */
  private checkHeader(
    method: string,
    metadata: grpc.Metadata,
    fail: (err: Partial<grpc.ServiceError>) => void,
  ): boolean {
    const header = metadata.get(SECURITY_HEADER).map(String);
    this.calls.push({ method, header });
    if (header.length !== 1 || header[0] !== 'true') {
      fail({ code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request' });
      return false;
    }
    return true;
  }

  private async listen(): Promise<void> {
    await rm(this.socketPath, { force: true });
    const server = new grpc.Server();
    const service = (workloadApiDefinition().SpiffeWorkloadAPI as grpc.ServiceClientConstructor).service;
    const streamError = (call: grpc.ServerWritableStream<unknown, unknown>) => (err: Partial<grpc.ServiceError>) =>
      call.emit('error', err);
    server.addService(service, {
      FetchX509SVID: (call: X509Stream) => {
        if (!this.checkHeader('FetchX509SVID', call.metadata, streamError(call))) return;
        if (this.failNextWith) {
          const failure = this.failNextWith;
          this.failNextWith = undefined;
          call.emit('error', failure);
          return;
        }
        if (!this.registered) return this.deny(call);
        this.x509Streams.add(call);
        call.on('cancelled', () => this.x509Streams.delete(call));
        if (this.x509) call.write(this.x509);
      },
      FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        if (!this.checkHeader('FetchX509Bundles', call.metadata, streamError(call))) return;
        call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not in the test server' });
      },
      FetchJWTBundles: (call: JwtBundleStream) => {
        if (!this.checkHeader('FetchJWTBundles', call.metadata, streamError(call))) return;
        if (!this.registered) return this.deny(call);
        this.jwtBundleStreams.add(call);
        call.on('cancelled', () => this.jwtBundleStreams.delete(call));
        call.write({ bundles: this.jwtBundles });
      },
      FetchJWTSVID: (
        call: grpc.ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        if (!this.checkHeader('FetchJWTSVID', call.metadata, (err) => callback(err as grpc.ServiceError))) return;
        if (call.request.audience.length === 0) {
          return callback({
            code: grpc.status.INVALID_ARGUMENT,
            details: 'audience must be specified',
          } as grpc.ServiceError);
        }
        if (!this.registered) {
          return callback({ code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' } as grpc.ServiceError);
        }
        callback(null, { svids: this.jwtSvids(call.request.audience, call.request.spiffe_id) });
      },
      ValidateJWTSVID: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (!this.checkHeader('ValidateJWTSVID', call.metadata, (err) => callback(err as grpc.ServiceError))) return;
        callback({ code: grpc.status.UNIMPLEMENTED, details: 'not in the test server' } as grpc.ServiceError);
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    this.server = server;
  }
}
