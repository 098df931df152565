// The Workload API service definition loaded from our workload.proto with proto-loader: what the Workload
// API servers (`dev workload-api`, the tests' agent) serve, and the reference the client's hand codec
// (workload-api-messages.ts) is tested against. The sidecar's own client does not load it (startup cost).
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Our proto, next to this module in src/ and in dist/ (the build copies it). */
export const WORKLOAD_PROTO_PATH = fileURLToPath(new URL('./workload.proto', import.meta.url));

let definition: grpc.GrpcObject | undefined;

/** The loaded service definition (loaded once). */
export function workloadApiDefinition(): grpc.GrpcObject {
  definition ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(WORKLOAD_PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true }),
  );
  return definition;
}
