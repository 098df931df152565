// `spiffe-sidecar dev issuer`: a local OIDC issuer for development. It serves OIDC discovery and its JWKS
// over HTTPS on loopback only (the sidecar fetches issuer keys over https:// only), with a certificate
// from a small CA of its own kept in the directory: the sidecar trusts it with `--jwt-ca-file`.
// Files of the directory (made once, then kept): jwt-signing-key.jwk (0600), issuer-ca.crt,
// issuer-tls.crt, issuer-tls.key (0600), and issuer.json, the URL `dev token` puts in `iss`.
import { createServer, type Server } from 'node:https';
import { type AddressInfo, isIP } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SidecarError } from '../errors.js';
import { type Issuer, issueCertificate } from '../certs/dev-ca.js';
import { x509 } from '../spiffe/x509-library.js';
import { jwksOf, loadOrCreateSigningKey, makeDevDir, writeDevFile } from './jwt-key.js';

export const ISSUER_FILE = 'issuer.json';
export const ISSUER_CA_FILE = 'issuer-ca.crt';
const TLS_CERT_FILE = 'issuer-tls.crt';
const TLS_KEY_FILE = 'issuer-tls.key';
const DAY = 86_400_000;
/** The sidecar's rule for issuer names (`--jwt-issuer NAME=URL`). */
const ISSUER_NAME = /^[a-z0-9][a-z0-9-]*$/;

export interface DevIssuerOptions {
  dir: string;
  /** A literal loopback address: 127.x.x.x or ::1. */
  host: string;
  /** 0 for any free port. */
  port: number;
  name: string;
}

export interface DevIssuer {
  /** `https://127.0.0.1:PORT`: the `iss` of its tokens and the URL for `--jwt-issuer`. */
  readonly url: string;
  readonly name: string;
  /** Absolute path of the CA certificate for the sidecar's `--jwt-ca-file`. */
  readonly caFile: string;
  /** The sidecar flags that trust this issuer. */
  readonly sidecarFlags: string[];
  close(): Promise<void>;
}

/** What `dev issuer` recorded in a directory: its URL and name. */
export interface IssuerRecord {
  issuer: string;
  name: string;
}

export function isLoopbackAddress(host: string): boolean {
  return host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

export function checkIssuerName(name: string, flag = '--name'): string {
  if (!ISSUER_NAME.test(name))
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `${flag} ${JSON.stringify(name)}: lowercase letters, digits and - (the sidecar's --jwt-issuer NAME)`,
    );
  return name;
}

/** The serving certificate, from a CA of its own (made once; again when it has less than a day left). */
async function servingCertificate(dir: string): Promise<{ cert: string; key: string }> {
  const [cert, key, ca] = await Promise.all(
    [TLS_CERT_FILE, TLS_KEY_FILE, ISSUER_CA_FILE].map((f) => readFile(join(dir, f), 'utf8').catch(() => undefined)),
  );
  if (cert && key && ca) {
    try {
      if (new x509.X509Certificate(cert).notAfter.getTime() - Date.now() > DAY) return { cert, key };
    } catch {
      // unreadable: made again below
    }
  }
  const notAfter = new Date(Date.now() + 365 * DAY);
  const root = await issueCertificate(undefined, {
    subject: 'O=spiffe-sidecar dev, CN=dev issuer CA',
    isCA: true,
    keyUsage: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    notAfter,
  });
  const issuer: Issuer = { certPem: root.certPem, keys: root.keys, cert: root.cert, chainPem: '' };
  const leaf = await issueCertificate(issuer, {
    subject: 'O=spiffe-sidecar dev, CN=dev issuer',
    keyUsage: x509.KeyUsageFlags.digitalSignature,
    extKeyUsage: [x509.ExtendedKeyUsage.serverAuth],
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
        { type: 'dns', value: 'localhost' },
      ]),
    ],
    notAfter,
  });
  await writeDevFile('--dir', join(dir, TLS_KEY_FILE), leaf.keyPem, 0o600);
  await writeDevFile('--dir', join(dir, TLS_CERT_FILE), leaf.chainPem);
  await writeDevFile('--dir', join(dir, ISSUER_CA_FILE), root.certPem);
  return { cert: leaf.chainPem, key: leaf.keyPem };
}

/** Starts the issuer; the directory's key and certificate are made on first use. */
export async function startDevIssuer(options: DevIssuerOptions): Promise<DevIssuer> {
  const { dir, host, port } = options;
  const name = checkIssuerName(options.name);
  if (!isLoopbackAddress(host))
    throw new SidecarError(
      'ERR_CONFIG_INVALID',
      `--listen ${host}:${port}: the dev issuer listens on loopback only (127.0.0.1 or [::1]): it is for one machine`,
    );
  await makeDevDir('--dir', dir);
  const key = await loadOrCreateSigningKey(dir);
  const tls = await servingCertificate(dir);
  const jwks = JSON.stringify(jwksOf(key));
  let discovery = '';
  const server: Server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    res.setHeader('cache-control', 'no-store');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    const body = path === '/.well-known/openid-configuration' ? discovery : path === '/jwks.json' ? jwks : undefined;
    if (body === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new SidecarError('ERR_LISTEN', `--listen ${host}:${port}: cannot listen (${err.code})`)),
    );
    server.listen(port, host, () => resolveListen());
  });
  const bound = (server.address() as AddressInfo).port;
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  discovery = JSON.stringify({
    issuer: url,
    jwks_uri: `${url}/jwks.json`,
    id_token_signing_alg_values_supported: ['ES256'],
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
  });
  const record: IssuerRecord = { issuer: url, name };
  await writeDevFile('--dir', join(dir, ISSUER_FILE), `${JSON.stringify(record, null, 2)}\n`);
  const caFile = resolve(dir, ISSUER_CA_FILE);
  return {
    url,
    name,
    caFile,
    sidecarFlags: ['--jwt-issuer', `${name}=${url}`, '--jwt-ca-file', caFile],
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

/** The issuer URL `dev issuer` recorded in `dir`: what `dev token` puts in `iss`. */
export async function readIssuerRecord(dir: string): Promise<IssuerRecord> {
  const text = await readFile(join(dir, ISSUER_FILE), 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new SidecarError(
      'ERR_FILE_READ',
      err.code === 'ENOENT'
        ? `--dir ${dir}: no ${ISSUER_FILE} yet; start 'spiffe-sidecar dev issuer --dir ${dir}' first (it records the issuer URL tokens carry), or give --spiffe-id for a JWT-SVID`
        : `--dir ${dir}: cannot read ${ISSUER_FILE} (${err.code})`,
    );
  });
  try {
    const record = JSON.parse(text) as Partial<IssuerRecord>;
    if (typeof record.issuer === 'string' && typeof record.name === 'string') return record as IssuerRecord;
  } catch {
    // below
  }
  throw new SidecarError(
    'ERR_FILE_READ',
    `--dir ${dir}: ${ISSUER_FILE} is not what 'dev issuer' writes; start 'spiffe-sidecar dev issuer --dir ${dir}' again`,
  );
}
