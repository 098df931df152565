// A SPIFFE Workload API for the bench's SPIRE mode: gRPC over a Unix socket, serving one fixed X.509-SVID
// and one JWT bundle, as a SPIRE agent would to a registered workload. Only what the sidecar needs to become
// ready: each stream gets the full state once and stays open (as the agent keeps it open for rotations).
// A plain-JS cousin of test/helpers/workload-api-server.ts (the bench runs without a TypeScript loader).
// Usage: node bench/servers/workload-api.js SOCKET_PATH SVID_DIR SPIFFE_ID JWKS_FILE
//   SVID_DIR holds tls.crt (chain, leaf first), tls.key and ca.crt; prints "listening SOCKET_PATH" when ready.
import { Buffer } from 'node:buffer';
import { createPrivateKey } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import process from 'node:process';
import { URL } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const [socketPath, svidDir, spiffeId, jwksFile] = process.argv.slice(2);
if (!socketPath || !svidDir || !spiffeId || !jwksFile) {
  process.stderr.write('usage: workload-api.js SOCKET_PATH SVID_DIR SPIFFE_ID JWKS_FILE\n');
  process.exit(2);
}

// The sidecar's own proto (the build copies it into dist/), so that both ends agree on the wire format.
const PROTO = new URL('../../dist/identity/workload.proto', import.meta.url).pathname;
const SECURITY_HEADER = 'workload.spiffe.io';

/**
 * PEM → concatenated DER of its blocks, as the Workload API carries certificate chains and bundles.
 * @param {string} pem
 */
function pemToDer(pem) {
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([^-]+)-----END \1-----/g)];
  if (blocks.length === 0) throw new Error('no PEM block');
  return Buffer.concat(blocks.map((b) => Buffer.from(b[2].replace(/\s+/g, ''), 'base64')));
}

const read = (/** @type {string} */ name) => readFileSync(join(svidDir, name), 'utf8');
const x509Message = {
  svids: [
    {
      spiffe_id: spiffeId,
      x509_svid: pemToDer(read('tls.crt')),
      // The spec wants PKCS#8 DER; re-exporting also covers a key file in SEC1 ("EC PRIVATE KEY") form.
      x509_svid_key: createPrivateKey(read('tls.key')).export({ type: 'pkcs8', format: 'der' }),
      bundle: pemToDer(read('ca.crt')),
      hint: '',
    },
  ],
  crl: [],
  federated_bundles: {},
};
// JWT bundles are keyed by trust domain ID (`spiffe://td`); `new URL` has no origin for spiffe:, hence host.
const jwtBundlesMessage = {
  bundles: { [`spiffe://${new URL(spiffeId).host}`]: readFileSync(jwksFile) },
};

/**
 * The spec's security check: without `workload.spiffe.io: true` the call fails with InvalidArgument.
 * @param {grpc.Metadata} metadata
 */
const headerOk = (metadata) => {
  const values = metadata.get(SECURITY_HEADER).map(String);
  return values.length === 1 && values[0] === 'true';
};
const badHeader = { code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request' };
const unimplemented = { code: grpc.status.UNIMPLEMENTED, details: 'not in the bench Workload API' };

/**
 * A server-streaming method that sends `message` once and leaves the stream open.
 * @param {object} message
 * @returns {grpc.handleServerStreamingCall<unknown, object>}
 */
const streamOnce = (message) => (call) => {
  if (!headerOk(call.metadata)) return void call.emit('error', badHeader);
  call.write(message);
};
/** @type {grpc.handleServerStreamingCall<unknown, object>} */
const streamUnimplemented = (call) => void call.emit('error', headerOk(call.metadata) ? unimplemented : badHeader);
/** @type {grpc.handleUnaryCall<unknown, object>} */
const unaryUnimplemented = (call, callback) =>
  callback(/** @type {grpc.ServiceError} */ (headerOk(call.metadata) ? unimplemented : badHeader));

const definition = grpc.loadPackageDefinition(
  protoLoader.loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true }),
);
const server = new grpc.Server();
server.addService(/** @type {grpc.ServiceClientConstructor} */ (definition.SpiffeWorkloadAPI).service, {
  FetchX509SVID: streamOnce(x509Message),
  FetchJWTBundles: streamOnce(jwtBundlesMessage),
  FetchX509Bundles: streamUnimplemented,
  FetchJWTSVID: unaryUnimplemented,
  ValidateJWTSVID: unaryUnimplemented,
});

// A socket file left by an earlier run would make the bind fail.
rmSync(socketPath, { force: true });
server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    process.stderr.write(`bind ${socketPath}: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`listening ${socketPath}\n`);
});
process.on('SIGTERM', () => {
  // Open streams would keep a graceful shutdown waiting; the bench is done with them.
  server.forceShutdown();
  rmSync(socketPath, { force: true });
  process.exit(0);
});
