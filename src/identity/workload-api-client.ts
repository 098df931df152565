// A gRPC client of the SPIFFE Workload API (plaintext gRPC over a Unix socket or loopback TCP, Workload
// Endpoint §3). Every call carries the security header `workload.spiffe.io: true`. RPC failures surface
// as grpc-js ServiceErrors with a status code; the callers decide about retries.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { SidecarError } from '../errors.js';
import type { WorkloadEndpoint } from './workload-endpoint.js';

/** Our proto, next to this module in src/ and in dist/ (the build copies it). */
export const WORKLOAD_PROTO_PATH = fileURLToPath(new URL('./workload.proto', import.meta.url));
export const SECURITY_HEADER = 'workload.spiffe.io';

export interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface X509SvidResponseMessage {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

export interface JwtSvidMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}

export interface JwtBundlesResponseMessage {
  bundles: Record<string, Buffer>;
}

let definition: grpc.GrpcObject | undefined;

/** The loaded service definition (loaded once; also used by the test server). */
export function workloadApiDefinition(): grpc.GrpcObject {
  definition ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(WORKLOAD_PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true }),
  );
  return definition;
}

type Stream<T> = grpc.ClientReadableStream<T>;

interface RawClient extends grpc.Client {
  FetchX509SVID(request: object, metadata: grpc.Metadata): Stream<X509SvidResponseMessage>;
  FetchJWTBundles(request: object, metadata: grpc.Metadata): Stream<JwtBundlesResponseMessage>;
  FetchJWTSVID(
    request: object,
    metadata: grpc.Metadata,
    callback: (err: grpc.ServiceError | null, res?: { svids: JwtSvidMessage[] }) => void,
  ): grpc.ClientUnaryCall;
}

export class WorkloadApiClient {
  private readonly client: RawClient;

  constructor(readonly endpoint: WorkloadEndpoint) {
    const Service = workloadApiDefinition().SpiffeWorkloadAPI as grpc.ServiceClientConstructor;
    this.client = new Service(endpoint.grpcTarget, grpc.credentials.createInsecure()) as unknown as RawClient;
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set(SECURITY_HEADER, 'true');
    return metadata;
  }

  /** The X.509-SVID stream: each message is the full state. */
  fetchX509Svid(): Stream<X509SvidResponseMessage> {
    return this.client.FetchX509SVID({}, this.metadata());
  }

  /** The JWT bundles stream: each message is the full set of JWKS documents by trust domain. */
  fetchJwtBundles(): Stream<JwtBundlesResponseMessage> {
    return this.client.FetchJWTBundles({}, this.metadata());
  }

  /** JWT-SVIDs for an audience (mandatory, Workload API §6.2.1). */
  fetchJwtSvid(audience: string[], spiffeId?: string): Promise<JwtSvidMessage[]> {
    if (audience.length === 0) {
      return Promise.reject(new SidecarError('ERR_CONFIG_INVALID', 'a JWT-SVID needs at least one audience'));
    }
    return new Promise((resolve, reject) => {
      this.client.FetchJWTSVID({ audience, spiffe_id: spiffeId ?? '' }, this.metadata(), (err, res) =>
        err ? reject(err) : resolve(res?.svids ?? []),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
