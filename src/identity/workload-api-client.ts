// A gRPC client of the SPIFFE Workload API (plaintext gRPC over a Unix socket or loopback TCP, Workload
// Endpoint §3). Every call carries the security header `workload.spiffe.io: true`. RPC failures surface
// as grpc-js ServiceErrors with a status code; the callers decide about retries. The messages are encoded and
// decoded by workload-api-messages.ts, not by proto-loader (startup cost; see there): a message that is not
// valid protobuf fails its call with INTERNAL, as any deserialization error does in grpc-js.
import * as grpc from '@grpc/grpc-js';
import { SidecarError } from '../errors.js';
import {
  decodeJwtBundlesResponse,
  decodeJwtSvidResponse,
  decodeX509SvidResponse,
  encodeEmptyRequest,
  encodeJwtSvidRequest,
  type JwtBundlesResponseMessage,
  type JwtSvidMessage,
  type X509SvidResponseMessage,
} from './workload-api-messages.js';
import type { WorkloadEndpoint } from './workload-endpoint.js';

export const SECURITY_HEADER = 'workload.spiffe.io';

/** The proto declares no package: methods are `/SpiffeWorkloadAPI/<name>`. */
const SERVICE_PATH = '/SpiffeWorkloadAPI/';

type Stream<T> = grpc.ClientReadableStream<T>;

export class WorkloadApiClient {
  private readonly client: grpc.Client;

  constructor(readonly endpoint: WorkloadEndpoint) {
    this.client = new grpc.Client(endpoint.grpcTarget, grpc.credentials.createInsecure());
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set(SECURITY_HEADER, 'true');
    return metadata;
  }

  /** The X.509-SVID stream: each message is the full state. */
  fetchX509Svid(): Stream<X509SvidResponseMessage> {
    const method = `${SERVICE_PATH}FetchX509SVID`;
    return this.client.makeServerStreamRequest(method, encodeEmptyRequest, decodeX509SvidResponse, {}, this.metadata());
  }

  /** The JWT bundles stream: each message is the full set of JWKS documents by trust domain. */
  fetchJwtBundles(): Stream<JwtBundlesResponseMessage> {
    const method = `${SERVICE_PATH}FetchJWTBundles`;
    return this.client.makeServerStreamRequest(
      method,
      encodeEmptyRequest,
      decodeJwtBundlesResponse,
      {},
      this.metadata(),
    );
  }

  /** JWT-SVIDs for an audience (mandatory, Workload API §6.2.1). */
  fetchJwtSvid(audience: string[], spiffeId?: string): Promise<JwtSvidMessage[]> {
    if (audience.length === 0) {
      return Promise.reject(new SidecarError('ERR_CONFIG_INVALID', 'a JWT-SVID needs at least one audience'));
    }
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        `${SERVICE_PATH}FetchJWTSVID`,
        encodeJwtSvidRequest,
        decodeJwtSvidResponse,
        { audience, spiffe_id: spiffeId ?? '' },
        this.metadata(),
        (err, res) => (err ? reject(err) : resolve(res?.svids ?? [])),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
