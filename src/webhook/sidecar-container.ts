// The injected sidecar: a native sidecar (an init container with restartPolicy Always) running
// `spiffe-sidecar run`, each setting one `--flag=value` argument (so a value can never be read as
// another flag), its identity volume (and the pod's projected tokens for `auth=k8s-token` routes, in this
// container only), ports, probes, resources and a locked-down security context.
import type { PodSidecarSettings } from './annotations.js';
import type { Container, Volume, VolumeMount } from './kubernetes-types.js';
import type { SidecarTemplate } from './options.js';

export const SIDECAR_CONTAINER_NAME = 'spiffe-sidecar';

/** The image's non-root user (the Dockerfile's USER): runAsNonRoot needs a numeric UID to check. */
export const SIDECAR_UID = 65532;

/** Where the SPIFFE CSI driver mounts the SPIRE agent's socket directory, and the socket in it. */
export const WORKLOAD_API_DIR = '/spiffe-workload-api';
export const WORKLOAD_API_SOCKET = `unix://${WORKLOAD_API_DIR}/spire-agent.sock`;
export const SPIFFE_CSI_DRIVER = 'csi.spiffe.io';

const IDENTITY_DIR = '/var/run/spiffe-sidecar/identity';
const KUBERNETES_DIR = '/var/run/spiffe-sidecar/kubernetes';
const POLICY_DIR = '/etc/spiffe-sidecar/policy';
export const TOKENS_DIR = '/var/run/spiffe-sidecar/tokens';
export const POLICY_FILE = `${POLICY_DIR}/policy.yaml`;

/** Volume names, prefixed so they cannot collide with the app's own (a collision is a denial). */
export const VOLUME_NAMES = {
  workloadApi: 'spiffe-sidecar-workload-api',
  identity: 'spiffe-sidecar-identity',
  kubernetes: 'spiffe-sidecar-kubernetes',
  policy: 'spiffe-sidecar-policy',
  tokens: 'spiffe-sidecar-tokens',
} as const;

export const PORT_NAMES = { inbound: 'spiffe-inbound', admin: 'spiffe-admin' } as const;

/** A file name for a token: the audience as a DNS label (`https://orders.example` → `https-orders-example`). */
function tokenFileName(audience: string, taken: ReadonlySet<string>): string {
  const base =
    audience
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 63)
      .replace(/-+$/, '') || 'token';
  for (let n = 1; ; n++) {
    const suffix = n === 1 ? '' : `-${n}`;
    const name = `${base.slice(0, 63 - suffix.length).replace(/-+$/, '')}${suffix}`;
    if (!taken.has(name)) return name;
  }
}

/**
 * The pod's projected service-account tokens, audience → file name in TOKENS_DIR: one per distinct audience
 * of the `auth=k8s-token` routes, in the order they first appear (so the same pod always gets the same names).
 */
export function serviceAccountTokenFiles(s: PodSidecarSettings): Map<string, string> {
  const files = new Map<string, string>();
  const taken = new Set<string>();
  for (const { tokenAudience } of s.outbound) {
    if (tokenAudience === undefined || files.has(tokenAudience)) continue;
    const name = tokenFileName(tokenAudience, taken);
    taken.add(name);
    files.set(tokenAudience, name);
  }
  return files;
}

/** The volumes the sidecar needs, each with where it is mounted. */
export function sidecarVolumes(s: PodSidecarSettings, t: SidecarTemplate): { volume: Volume; mount: VolumeMount }[] {
  const out: { volume: Volume; mount: VolumeMount }[] = [];
  if (s.mode === 'spire') {
    out.push({
      volume: { name: VOLUME_NAMES.workloadApi, csi: { driver: SPIFFE_CSI_DRIVER, readOnly: true } },
      mount: { name: VOLUME_NAMES.workloadApi, mountPath: WORKLOAD_API_DIR, readOnly: true },
    });
  }
  if (s.mode === 'file') {
    out.push({
      volume: { name: VOLUME_NAMES.identity, secret: { secretName: s.secret as string } },
      mount: { name: VOLUME_NAMES.identity, mountPath: IDENTITY_DIR, readOnly: true },
    });
  }
  if (s.mode === 'jwt' && s.appPort !== undefined) {
    // Our own projected token (audience-bound, rotated by kubelet) for TokenReview, and the cluster CA
    // that signs the API server's certificate, for fetching the issuer's keys over HTTPS. Webhook-added
    // containers may not get the default service-account mount, so we bring both.
    out.push({
      volume: {
        name: VOLUME_NAMES.kubernetes,
        projected: {
          sources: [
            { serviceAccountToken: { audience: t.k8sTokenAudience, expirationSeconds: 3600, path: 'token' } },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
          ],
        },
      },
      mount: { name: VOLUME_NAMES.kubernetes, mountPath: KUBERNETES_DIR, readOnly: true },
    });
  }
  if (s.policyConfigMap !== undefined) {
    out.push({
      volume: { name: VOLUME_NAMES.policy, configMap: { name: s.policyConfigMap } },
      mount: { name: VOLUME_NAMES.policy, mountPath: POLICY_DIR, readOnly: true },
    });
  }
  const tokens = serviceAccountTokenFiles(s);
  if (tokens.size > 0) {
    // One projected volume, one source per audience: one name to reserve and one mount however many
    // routes, and kubelet still renews each token on its own. Only this container mounts it: the app's
    // containers never see the tokens the sidecar sends for them.
    out.push({
      volume: {
        name: VOLUME_NAMES.tokens,
        projected: {
          sources: [...tokens].map(([audience, path]) => ({
            serviceAccountToken: { audience, expirationSeconds: s.tokenExpirationSeconds, path },
          })),
        },
      },
      mount: { name: VOLUME_NAMES.tokens, mountPath: TOKENS_DIR, readOnly: true },
    });
  }
  return out;
}

/** `spiffe-sidecar run` arguments: one `--flag=value` per setting. */
export function sidecarArgs(s: PodSidecarSettings, t: SidecarTemplate): string[] {
  const args = ['run', `--admin-listen=0.0.0.0:${t.adminPort}`];
  if (s.appPort !== undefined) {
    args.push(`--listen=0.0.0.0:${s.port}`, `--upstream=http://127.0.0.1:${s.appPort}`);
    for (const rule of s.allow) args.push(`--allow=${rule}`);
    if (s.policyConfigMap !== undefined) args.push(`--policy-file=${POLICY_FILE}`);
    if (s.authMode === 'jwt') {
      args.push('--auth-mode=jwt');
      for (const audience of s.jwtAudience) args.push(`--jwt-audience=${audience}`);
      // Bearer tokens only over TLS (RFC 6750 §5.3): with an SVID, we serve it. Mode jwt has none, so its
      // tokens cross the pod network as they are (README, "Kubernetes": encrypt the pod network, or use
      // mode spire).
      args.push(s.mode === 'jwt' ? '--unsafe-plaintext-jwt' : '--jwt-transport=tls');
    }
  }
  if (s.mode === 'file') {
    args.push(
      `--mtls-cert-file=${IDENTITY_DIR}/tls.crt`,
      `--mtls-key-file=${IDENTITY_DIR}/tls.key`,
      `--mtls-ca-file=${IDENTITY_DIR}/ca.crt`,
    );
  }
  // The issuer's keys judge callers: an outbound-only sidecar has none (and the sidecar refuses the flags).
  if (s.mode === 'jwt' && s.appPort !== undefined) {
    args.push(
      `--jwt-issuer=k8s=${t.k8sIssuer}`,
      `--jwt-ca-file=${KUBERNETES_DIR}/ca.crt`,
      `--k8s-trust-domain=${t.k8sTrustDomain}`,
    );
    if (s.tokenReview) args.push('--k8s-token-review', `--k8s-token-file=${KUBERNETES_DIR}/token`);
  }
  const tokens = serviceAccountTokenFiles(s);
  for (const { route, tokenAudience } of s.outbound) {
    const file = tokenAudience === undefined ? '' : `,token-file=${TOKENS_DIR}/${tokens.get(tokenAudience)}`;
    args.push(`--outbound=${route}${file}`);
  }
  return args;
}

/** The environment: SPIRE mode finds the agent the Workload Endpoint spec's way. */
export function sidecarEnv(s: PodSidecarSettings): { name: string; value: string }[] {
  return s.mode === 'spire' ? [{ name: 'SPIFFE_ENDPOINT_SOCKET', value: WORKLOAD_API_SOCKET }] : [];
}

export function sidecarContainer(s: PodSidecarSettings, t: SidecarTemplate): Container {
  const admin = { path: '/readyz', port: PORT_NAMES.admin };
  return {
    name: SIDECAR_CONTAINER_NAME,
    image: t.image,
    imagePullPolicy: t.imagePullPolicy,
    restartPolicy: 'Always',
    args: sidecarArgs(s, t),
    env: sidecarEnv(s),
    ports: [
      ...(s.appPort !== undefined
        ? [{ name: PORT_NAMES.inbound, containerPort: s.port, protocol: 'TCP' as const }]
        : []),
      { name: PORT_NAMES.admin, containerPort: t.adminPort, protocol: 'TCP' },
    ],
    // The app containers start only once this succeeds: the identity is loaded (SPIRE may take a while
    // to attest a new pod, hence up to 5 minutes).
    startupProbe: { httpGet: admin, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 300 },
    readinessProbe: { httpGet: admin, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 2 },
    livenessProbe: { httpGet: { path: '/healthz', port: PORT_NAMES.admin }, periodSeconds: 10, failureThreshold: 3 },
    resources: {
      requests: { cpu: t.resources.cpuRequest, memory: t.resources.memoryRequest },
      limits: { memory: t.resources.memoryLimit },
    },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: SIDECAR_UID,
      runAsGroup: SIDECAR_UID,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: sidecarVolumes(s, t).map((v) => v.mount),
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}
