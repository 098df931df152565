// `spiffe-sidecar dev workload-api`: a local SPIFFE Workload API (gRPC over a Unix socket) serving one
// workload's identity from a dev CA, so SPIRE mode can be tried without SPIRE. It streams an X509-SVID
// (renewed at half its lifetime and pushed to every open stream), the trust bundle, JWT-SVIDs signed by
// the CA directory's JWT key (jwt-signing-key.jwk, the key `dev token --dir CA_DIR --spiffe-id` signs
// with too) and that key as the trust domain's JWT bundle. It attests nobody: every process that can
// open the socket gets the SVID, so the socket is made 0600. Calls without the security header
// `workload.spiffe.io: true` get InvalidArgument, as the spec says.
import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type CertificateAuthority, type IssuedCertificate, issueSvid, loadDevCa } from '../certs/dev-ca.js';
import { SidecarError } from '../errors.js';
import { SECURITY_HEADER } from '../identity/workload-api-client.js';
import { workloadApiDefinition } from '../identity/workload-api-definition.js';
import type { X509SvidResponseMessage } from '../identity/workload-api-messages.js';
import { parseSpiffeId } from '../spiffe/id.js';
import { type DevSigningKey, loadOrCreateSigningKey, signToken, spiffeJwtBundleOf } from './jwt-key.js';

export interface DevWorkloadApiOptions {
  /** A path, or `unix:///absolute/path`. */
  socket: string;
  /** A directory made by `certs init`. */
  caDir: string;
  id: string;
  svidTtlMs: number;
  /** Lifetime of the JWT-SVIDs it mints (default 5 minutes). */
  jwtTtlMs?: number;
  /** Told of each renewal, as a line of text. */
  onRenew?: (line: string) => void;
}

export interface DevWorkloadApi {
  /** `unix:///absolute/path`: what `--workload-api-socket` takes. */
  readonly address: string;
  readonly spiffeId: string;
  readonly renewEveryMs: number;
  /** The SVID served now. */
  current(): IssuedCertificate;
  close(): Promise<void>;
}

/** PEM blocks → their DER, concatenated: how the Workload API carries certificates and keys. */
function pemToDer(pem: string): Buffer {
  const blocks = [...pem.matchAll(/-----BEGIN ([A-Z ]+)-----([^-]+)-----END \1-----/g)];
  return Buffer.concat(blocks.map((b) => Buffer.from(b[2].replace(/\s+/g, ''), 'base64')));
}

function socketPath(socket: string): string {
  const path = socket.startsWith('unix://') ? socket.slice('unix://'.length) : socket;
  if (socket.startsWith('unix://') && !path.startsWith('/'))
    throw new SidecarError('ERR_CONFIG_INVALID', `--socket ${socket}: write unix:///absolute/path, or a plain path`);
  if (path === '' || /^[a-z]+:\/\//.test(path))
    throw new SidecarError('ERR_CONFIG_INVALID', `--socket ${socket}: a Unix socket path, e.g. /tmp/dev-agent.sock`);
  return isAbsolute(path) ? path : resolve(path);
}

/** Refuses a path that is not a socket, or a socket someone still serves on; removes a stale one. */
async function clearStaleSocket(path: string, flag: string): Promise<void> {
  const stat = await lstat(path).catch(() => undefined);
  if (!stat) return;
  if (!stat.isSocket())
    throw new SidecarError('ERR_CONFIG_INVALID', `${flag} ${path}: the path exists and is not a socket`);
  const live = await new Promise<boolean>((done) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      done(true);
    });
    probe.once('error', () => done(false));
  });
  if (live) throw new SidecarError('ERR_LISTEN', `${flag} ${path}: something is already serving on this socket`);
  await unlink(path);
}

function x509Message(svid: IssuedCertificate, ca: CertificateAuthority, id: string): X509SvidResponseMessage {
  return {
    svids: [
      {
        spiffe_id: id,
        x509_svid: pemToDer(svid.chainPem),
        x509_svid_key: pemToDer(svid.keyPem),
        bundle: pemToDer(ca.certPem),
        hint: '',
      },
    ],
    crl: [],
    federated_bundles: {},
  };
}

type Stream<T> = grpc.ServerWritableStream<unknown, T>;

export async function startDevWorkloadApi(options: DevWorkloadApiOptions): Promise<DevWorkloadApi> {
  const path = socketPath(options.socket);
  const ca = await loadDevCa(options.caDir);
  let spiffeId: string;
  try {
    const parsed = parseSpiffeId(options.id);
    if (parsed.path === '') throw new Error(`a workload's ID has a path, e.g. ${parsed.toString()}/ns/prod/sa/orders`);
    spiffeId = parsed.toString();
  } catch (err) {
    throw new SidecarError('ERR_CONFIG_INVALID', `--id ${JSON.stringify(options.id)}: ${(err as Error).message}`);
  }
  if (!spiffeId.startsWith(`spiffe://${ca.trustDomain}/`))
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `--id ${spiffeId}: the CA in ${options.caDir} issues IDs of trust domain "${ca.trustDomain}" only`,
    );
  if (options.svidTtlMs < 10_000)
    throw new SidecarError('ERR_CONFIG_INVALID', '--ttl: at least 10s (the SVID is renewed at half its lifetime)');
  const jwtKey: DevSigningKey = await loadOrCreateSigningKey(options.caDir, '--ca');
  const trustDomainId = `spiffe://${ca.trustDomain}`;
  const jwtBundles = { [trustDomainId]: Buffer.from(JSON.stringify(spiffeJwtBundleOf(jwtKey))) };
  const x509Bundles = { [trustDomainId]: pemToDer(ca.certPem) };
  let svid = await issueSvid(ca, { id: spiffeId, lifetimeMs: options.svidTtlMs });
  let message = x509Message(svid, ca, spiffeId);
  const streams = new Set<Stream<unknown>>();
  const x509Streams = new Set<Stream<X509SvidResponseMessage>>();

  const renewEveryMs = Math.floor(options.svidTtlMs / 2);
  let renewing = false;
  const renew = setInterval(() => {
    if (renewing) return;
    renewing = true;
    issueSvid(ca, { id: spiffeId, lifetimeMs: options.svidTtlMs })
      .then((next) => {
        svid = next;
        message = x509Message(next, ca, spiffeId);
        for (const stream of x509Streams) stream.write(message);
        options.onRenew?.(
          `renewed ${spiffeId}: serial ${next.serialNumber}, not after ${next.cert.notAfter.toISOString()}`,
        );
      })
      .catch((err: unknown) => options.onRenew?.(`renewal failed: ${(err as Error).message}`))
      .finally(() => {
        renewing = false;
      });
  }, renewEveryMs);
  renew.unref();

  /** The spec's check; false (and the call failed) without `workload.spiffe.io: true`. */
  const headerOk = (metadata: grpc.Metadata, fail: (err: Partial<grpc.ServiceError>) => void): boolean => {
    const header = metadata.get(SECURITY_HEADER).map(String);
    if (header.length === 1 && header[0] === 'true') return true;
    fail({ code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request' });
    return false;
  };
  const streamFail = (call: Stream<unknown>) => (err: Partial<grpc.ServiceError>) => call.emit('error', err);
  /** Keeps a stream open (as an agent does) until the client goes. */
  const hold = <T>(call: Stream<T>, set?: Set<Stream<T>>) => {
    streams.add(call as Stream<unknown>);
    set?.add(call);
    const drop = () => {
      streams.delete(call as Stream<unknown>);
      set?.delete(call);
    };
    call.on('cancelled', drop);
    call.on('close', drop);
    call.on('error', drop);
  };

  const server = new grpc.Server();
  const service = (workloadApiDefinition().SpiffeWorkloadAPI as grpc.ServiceClientConstructor).service;
  server.addService(service, {
    FetchX509SVID: (call: Stream<X509SvidResponseMessage>) => {
      if (!headerOk(call.metadata, streamFail(call as Stream<unknown>))) return;
      hold(call, x509Streams);
      call.write(message);
    },
    FetchX509Bundles: (call: Stream<unknown>) => {
      if (!headerOk(call.metadata, streamFail(call))) return;
      hold(call);
      call.write({ crl: [], bundles: x509Bundles });
    },
    FetchJWTBundles: (call: Stream<unknown>) => {
      if (!headerOk(call.metadata, streamFail(call))) return;
      hold(call);
      call.write({ bundles: jwtBundles });
    },
    FetchJWTSVID: (
      call: grpc.ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      if (!headerOk(call.metadata, (err) => callback(err as grpc.ServiceError))) return;
      const { audience, spiffe_id: wanted } = call.request;
      if (audience.length === 0)
        return callback({
          code: grpc.status.INVALID_ARGUMENT,
          details: 'audience must be specified',
        } as grpc.ServiceError);
      if (wanted && wanted !== spiffeId)
        return callback({
          code: grpc.status.PERMISSION_DENIED,
          details: `no identity issued for ${wanted}`,
        } as grpc.ServiceError);
      signToken(jwtKey, { sub: spiffeId, aud: audience, ttlMs: options.jwtTtlMs ?? 300_000 }).then(
        (token) => callback(null, { svids: [{ spiffe_id: spiffeId, svid: token, hint: '' }] }),
        (err: unknown) =>
          callback({ code: grpc.status.INTERNAL, details: (err as Error).message } as grpc.ServiceError),
      );
    },
    ValidateJWTSVID: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback({
        code: grpc.status.UNIMPLEMENTED,
        details: 'not in the dev Workload API',
      } as grpc.ServiceError),
  });

  await clearStaleSocket(path, '--socket');
  const address = `unix://${path}`;
  // The socket is made 0600 as it is bound (a umask for the bind), not after: in between, anyone could
  // connect and keep a stream that hands out the SVID.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((done, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : done())),
    );
  } catch (err) {
    clearInterval(renew);
    server.forceShutdown();
    throw new SidecarError('ERR_LISTEN', `--socket ${path}: cannot listen (${(err as Error).message})`);
  } finally {
    process.umask(umask);
  }
  await chmod(path, 0o600);

  return {
    address,
    spiffeId,
    renewEveryMs,
    current: () => svid,
    close: async () => {
      clearInterval(renew);
      // Streams stay open for as long as the clients want: end them, then stop.
      for (const stream of streams) stream.end();
      await new Promise<void>((done) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          done();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          done();
        });
      });
      await unlink(path).catch(() => {});
    },
  };
}
