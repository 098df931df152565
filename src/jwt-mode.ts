// Bearer tokens, composed: the authenticator and where its keys come from (bundle files, the Workload API,
// OIDC issuers, TokenReview, and the CA TokenReview trusts). Loaded only when tokens are accepted (JWT mode,
// or mTLS mode with --jwt-audience), so that a certificate-only sidecar never loads jose; gRPC is loaded only
// when the keys come from the Workload API. A CA file that cannot be used fails startup with the flag's name.
// Key files reload like the identity files: on change (unless --no-watch), on SIGHUP (`reload()`), and
// every --reload-interval; --no-watch turns off only the watcher.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { JwtAuthenticator, type OidcIssuer } from './authn/jwt.js';
import type { JwksProvider } from './identity/jwks-provider.js';
import { createTokenReviewer } from './authn/token-review.js';
import type { Config, TokenAuthConfig } from './config.js';
import { RUN_DEFAULTS } from './config/defaults.js';
import { SidecarError } from './errors.js';
import { watchIdentityFiles } from './file-watcher.js';
import { type JwtBundleSource, JwtBundleFiles } from './identity/jwt-bundles.js';
import { RemoteJwks } from './identity/remote-jwks.js';
import type { Logger } from './log.js';
import type { KeyFetchMetrics, ReloadedFile } from './admin/metrics.js';
import { combinedOutcome, type ReloadOutcome } from './reloading-file.js';
import { parsePemCertificates } from './spiffe/certificate.js';

export type JwtMode = Awaited<ReturnType<typeof openJwt>>;

/** The `file` label of spiffe_sidecar_file_reloads_total, by flag. */
const FILE_LABELS = { '--jwt-bundle-file': 'jwt_bundle', '--jwt-jwks': 'jwt_jwks' } as const;

/**
 * JWT mode: the authenticator and where its keys come from (files, the Workload API, issuers). `metrics`
 * is told of every JWKS fetch and TokenReview (the first fetches happen here, before prom-client loads).
 */
export async function openJwt(config: Config, auth: TokenAuthConfig, log: Logger, metrics?: KeyFetchMetrics) {
  const closers: (() => Promise<void> | void)[] = [];
  /** The key files (each knows its flag): what SIGHUP and --reload-interval re-read. */
  const keyFiles: JwtBundleFiles[] = [];
  /** The issuers whose keys are fetched over HTTPS. */
  const remoteIssuers: string[] = [];
  let svid: JwtBundleSource | undefined;
  if (auth.bundleFiles.length > 0) {
    const files = await JwtBundleFiles.open(auth.bundleFiles, log, '--jwt-bundle-file');
    keyFiles.push(files);
    svid = files;
    if (config.watch) {
      const watcher = await watchIdentityFiles(
        auth.bundleFiles.map((f) => f.file),
        () => void files.reload('watch'),
        log,
      );
      closers.push(() => watcher.close());
    }
  } else if (config.source?.kind === 'workload-api') {
    const [{ WorkloadApiClient }, { WorkloadApiJwtBundles }] = await Promise.all([
      import('./identity/workload-api-client.js'),
      import('./identity/workload-api-jwt-bundles.js'),
    ]);
    const client = new WorkloadApiClient(config.source.endpoint);
    svid = new WorkloadApiJwtBundles(client, log);
    closers.push(() => client.close());
  }
  if (svid) closers.push(() => svid.close());
  const caPem = auth.caFile
    ? await readFile(auth.caFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
        throw new SidecarError('ERR_FILE_READ', `--jwt-ca-file ${auth.caFile}: cannot read the file (${err.code})`);
      })
    : undefined;
  // Before any issuer is waited for: a CA flag that cannot be used fails startup at once.
  const apiCaPem = auth.tokenReview && (await apiServerCa(auth.tokenReview.caFile, caPem));
  const issuers: OidcIssuer[] = [];
  for (const issuer of auth.issuers) {
    let keys: JwksProvider | undefined;
    if (issuer.kind === 'k8s' && auth.tokenReview?.only) {
      // --k8s-token-review-only: TokenReview is the signature check; no discovery, no JWKS fetch (many
      // clusters refuse anonymous discovery).
      keys = undefined;
    } else if (issuer.jwks?.file) {
      const file = await JwtBundleFiles.open([{ trustDomain: issuer.name, file: issuer.jwks.file }], log, '--jwt-jwks');
      keyFiles.push(file);
      if (config.watch) {
        const watcher = await watchIdentityFiles([issuer.jwks.file], () => void file.reload('watch'), log);
        closers.push(() => watcher.close());
      }
      // A key miss re-reads the file at most every 30 s: made-up kids must not become a read storm.
      let lastMiss = Number.NEGATIVE_INFINITY;
      let missReload: Promise<void> | undefined;
      keys = {
        current: () => file.current().get(issuer.name),
        version: 0,
        keyMissed: () => {
          if (Date.now() - lastMiss < 30_000) return missReload ?? Promise.resolve();
          lastMiss = Date.now();
          const reload: Promise<void> = file
            .reload('key_miss')
            .then(
              () => undefined,
              () => undefined,
            )
            .finally(() => {
              if (missReload === reload) missReload = undefined;
            });
          missReload = reload;
          return reload;
        },
      };
    } else {
      const remote = RemoteJwks.start({
        name: issuer.name,
        issuer: issuer.issuer,
        jwksUrl: issuer.jwks?.url,
        extraCaPem: caPem,
        log,
        onFetch: metrics && ((result, seconds) => metrics.jwksFetch(issuer.name, result, seconds)),
      });
      remoteIssuers.push(issuer.name);
      await remote.firstLoad;
      closers.push(() => remote.jwks.close());
      keys = remote.jwks;
    }
    issuers.push({
      name: issuer.name,
      issuer: issuer.issuer,
      kind: issuer.kind,
      k8sTrustDomain: auth.k8sTrustDomain,
      keys,
    });
  }
  /** Re-reads every key file; returns each flag's outcome, over its files (each file logs its own). */
  const reload = async (trigger: string): Promise<{ flag: string; outcome: ReloadOutcome }[]> => {
    const outcomes = await Promise.all(keyFiles.map((k) => k.reload(trigger)));
    const byFlag = new Map<string, ReloadOutcome[]>();
    keyFiles.forEach((k, i) => byFlag.set(k.flag, [...(byFlag.get(k.flag) ?? []), ...outcomes[i]]));
    return [...byFlag].map(([flag, each]) => ({ flag, outcome: combinedOutcome(each) }));
  };
  /** The key files' reloads, for spiffe_sidecar_file_reloads_total. */
  const reloadedFiles: ReloadedFile[] = keyFiles.map((k) => ({ label: FILE_LABELS[k.flag], stats: () => k.stats() }));
  if (config.reloadIntervalMs && keyFiles.length > 0) {
    const interval = setInterval(() => void reload('interval'), config.reloadIntervalMs).unref();
    closers.push(() => clearInterval(interval));
  }
  const review = auth.tokenReview;
  const authenticator = new JwtAuthenticator({
    audience: auth.audience,
    svidBundles: () => svid?.current(),
    issuers,
    tokenReview: review && {
      review: createTokenReviewer({
        ...review,
        caPem: apiCaPem ?? [],
        audiences: auth.audience,
        onReview: metrics && ((result, seconds) => metrics.tokenReview(result, seconds)),
        rememberInvalidMs: review.intervalMs,
      }),
      intervalMs: review.intervalMs,
    },
    maxTokenLifetimeMs: auth.maxTokenLifetimeMs,
    replayCacheSize: auth.replayCacheSize,
  });
  /** Ready when some key to verify tokens with has been loaded (an issuer TokenReview alone verifies has none). */
  const hasKeys = () =>
    (svid?.current()?.size ?? 0) > 0 || issuers.some((i) => i.keys === undefined || i.keys.current() !== undefined);
  return {
    authenticator,
    hasKeys,
    reload,
    reloadedFiles,
    remoteIssuers,
    tokenReview: review !== undefined,
    close: async () => {
      for (const c of closers) await c();
    },
  };
}

/**
 * The CA certificates (PEM) TokenReview trusts for the API server: `--k8s-api-ca-file`; without it the
 * in-cluster CA (the service account's ca.crt) when it can be read, else the system roots and --jwt-ca-file,
 * which is what TokenReview trusted before the flag existed, so that such setups keep working.
 */
async function apiServerCa(caFile: string | undefined, jwtCaPem: string | undefined): Promise<string[]> {
  if (caFile !== undefined) {
    const pem = await readFile(caFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new SidecarError('ERR_FILE_READ', `--k8s-api-ca-file ${caFile}: cannot read the file (${err.code})`);
    });
    const certificates = certificatesOf(pem);
    if (!certificates) {
      throw new SidecarError(
        'ERR_FILE_READ',
        `--k8s-api-ca-file ${caFile}: holds no PEM certificate that parses (it should hold the API server's CA)`,
      );
    }
    return certificates;
  }
  const inCluster = RUN_DEFAULTS['k8s-api-ca-file'].value;
  const pem = await readFile(inCluster, 'utf8').catch(() => undefined);
  // An in-cluster file that is not a CA is as good as none: not our flag, not our operator's mistake.
  return (pem !== undefined && certificatesOf(pem)) || [...rootCertificates, ...(jwtCaPem ? [jwtCaPem] : [])];
}

/** Every certificate of a PEM text, each as PEM again; undefined when there is none or one does not parse. */
function certificatesOf(pem: string): string[] | undefined {
  try {
    return parsePemCertificates(pem, 'CA file').map((c) => new X509Certificate(c.der).toString());
  } catch {
    return undefined;
  }
}
