// The real `spiffe-sidecar inject-webhook` over HTTPS, fed AdmissionReviews shaped like the API
// server's: in SPIRE, file and JWT mode (and outbound-only) the answer is a JSONPatch that, applied with
// a real RFC 6902 library, yields a pod that passes the Kubernetes schema, with the sidecar as a native
// sidecar whose configuration the sidecar itself accepts; the file-mode sidecar even starts for real.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli.js';
import { buildConfig } from '../../src/config.js';
import {
  applyReviewPatch,
  createWebhookCa,
  deploymentPod,
  issueServingCertificate,
  type PodFixture,
  type RunningWebhook,
  reviewPod,
  SIDECAR_IMAGE,
  startWebhook,
  stopWebhook,
  writeServingSecret,
} from '../helpers/admission.js';
import { createDevCa, issueSvid, writeServingFiles } from '../helpers/pki.js';
import { startCli, waitForEvent } from '../helpers/process.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();
let caPem: string;
let webhook: RunningWebhook;

beforeAll(async () => {
  const ca = await createWebhookCa();
  caPem = ca.certPem;
  const tls = join(ws.path, 'tls');
  await writeServingSecret(tls, await issueServingCertificate(ca));
  webhook = await startWebhook(tls, '--k8s-issuer', 'https://kubernetes.default.svc.cluster.local');
});
afterAll(() => stopWebhook(webhook));

type Container = Record<string, unknown> & { name: string; args: string[]; env: { name: string; value: string }[] };

function sidecarOf(pod: PodFixture): Container {
  const init = (pod.spec.initContainers ?? []) as Container[];
  expect(init[0]?.name).toBe('spiffe-sidecar');
  return init[0];
}

/** The sidecar's own CLI and config validation accept the injected arguments and environment. */
function expectAcceptedBySidecar(container: Container) {
  const command = parseCommandLine(container.args, Object.fromEntries(container.env.map((e) => [e.name, e.value])));
  expect(command.command).toBe('run');
  return buildConfig((command as { options: Parameters<typeof buildConfig>[0] }).options);
}

const SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: 65532,
  runAsGroup: 65532,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  privileged: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

describe('the inject webhook adds a native sidecar to annotated pods in each mode', () => {
  it('SPIRE mode (the default): the CSI driver socket, a startup probe on /readyz, a locked-down container', async () => {
    const pod = deploymentPod({
      'spiffe-sidecar.io/inject': 'true',
      'spiffe-sidecar.io/app-port': '8080',
      // Comma- and newline-separated, as a YAML block scalar would give them.
      'spiffe-sidecar.io/allow': 'spiffe://example.org/ns/shop/sa/frontend,\nspiffe://example.org/ns/batch/**\n',
    });
    const answer = await reviewPod(webhook.port, caPem, pod);
    expect(answer.response.uid).toBe(answer.uid);
    expect(answer.response.allowed).toBe(true);
    expect(answer.response.patchType).toBe('JSONPatch');
    // No initContainers yet: the patch creates the array; the annotation key's "/" is escaped (RFC 6901).
    expect(answer.patch?.map((op) => `${op.op} ${op.path}`)).toEqual([
      'add /spec/initContainers',
      'add /spec/volumes/-',
      'add /metadata/annotations/spiffe-sidecar.io~1status',
    ]);

    const patched = await applyReviewPatch(pod, answer);
    expect(patched.spec.containers).toEqual(pod.spec.containers);
    expect(patched.metadata.annotations).toMatchObject({ 'spiffe-sidecar.io/status': 'injected' });
    expect(patched.spec.volumes).toEqual([
      ...(pod.spec.volumes as unknown[]),
      { name: 'spiffe-sidecar-workload-api', csi: { driver: 'csi.spiffe.io', readOnly: true } },
    ]);
    const probe = { path: '/readyz', port: 'spiffe-admin' };
    expect(sidecarOf(patched)).toEqual({
      name: 'spiffe-sidecar',
      image: SIDECAR_IMAGE,
      imagePullPolicy: 'IfNotPresent',
      restartPolicy: 'Always',
      args: [
        'run',
        '--admin-listen=0.0.0.0:15020',
        '--listen=0.0.0.0:8443',
        '--upstream=http://127.0.0.1:8080',
        '--allow=spiffe://example.org/ns/shop/sa/frontend',
        '--allow=spiffe://example.org/ns/batch/**',
      ],
      env: [{ name: 'SPIFFE_ENDPOINT_SOCKET', value: 'unix:///spiffe-workload-api/spire-agent.sock' }],
      ports: [
        { name: 'spiffe-inbound', containerPort: 8443, protocol: 'TCP' },
        { name: 'spiffe-admin', containerPort: 15020, protocol: 'TCP' },
      ],
      startupProbe: { httpGet: probe, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 300 },
      readinessProbe: { httpGet: probe, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 2 },
      livenessProbe: { httpGet: { path: '/healthz', port: 'spiffe-admin' }, periodSeconds: 10, failureThreshold: 3 },
      resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
      securityContext: SECURITY_CONTEXT,
      volumeMounts: [{ name: 'spiffe-sidecar-workload-api', mountPath: '/spiffe-workload-api', readOnly: true }],
      terminationMessagePolicy: 'FallbackToLogsOnError',
    });
    const config = expectAcceptedBySidecar(sidecarOf(patched));
    expect(config.source).toMatchObject({ kind: 'workload-api' });
    expect(config.allow).toEqual(['spiffe://example.org/ns/shop/sa/frontend', 'spiffe://example.org/ns/batch/**']);
    await expect.poll(() => webhook.running.stdout()).toContain('"event":"pod_injected"');
  });

  it('file mode: the Secret volume, placed first among existing init containers and volumes', async () => {
    const migrate = { name: 'migrate', image: 'ghcr.io/example/orders:1.4.2', args: ['migrate'] };
    const pod = deploymentPod(
      {
        'spiffe-sidecar.io/inject': 'true',
        'spiffe-sidecar.io/mode': 'file',
        'spiffe-sidecar.io/secret': 'orders-svid',
        'spiffe-sidecar.io/app-port': '8080',
        'spiffe-sidecar.io/port': '9443',
        'spiffe-sidecar.io/allow': 'spiffe://example.org/ns/shop/sa/frontend',
      },
      { initContainers: [migrate] },
    );
    const answer = await reviewPod(webhook.port, caPem, pod);
    expect(answer.patch?.map((op) => `${op.op} ${op.path}`)).toEqual([
      'add /spec/initContainers/0',
      'add /spec/volumes/-',
      'add /metadata/annotations/spiffe-sidecar.io~1status',
    ]);
    const patched = await applyReviewPatch(pod, answer);
    expect((patched.spec.initContainers as unknown[])[1]).toEqual(migrate);
    const sidecar = sidecarOf(patched);
    expect(sidecar.args).toEqual([
      'run',
      '--admin-listen=0.0.0.0:15020',
      '--listen=0.0.0.0:9443',
      '--upstream=http://127.0.0.1:8080',
      '--allow=spiffe://example.org/ns/shop/sa/frontend',
      '--mtls-cert-file=/var/run/spiffe-sidecar/identity/tls.crt',
      '--mtls-key-file=/var/run/spiffe-sidecar/identity/tls.key',
      '--mtls-ca-file=/var/run/spiffe-sidecar/identity/ca.crt',
    ]);
    expect(sidecar.env).toEqual([]);
    expect(sidecar.ports).toContainEqual({ name: 'spiffe-inbound', containerPort: 9443, protocol: 'TCP' });
    expect(sidecar.volumeMounts).toEqual([
      { name: 'spiffe-sidecar-identity', mountPath: '/var/run/spiffe-sidecar/identity', readOnly: true },
    ]);
    expect((patched.spec.volumes as unknown[]).at(-1)).toEqual({
      name: 'spiffe-sidecar-identity',
      secret: { secretName: 'orders-svid' },
    });
    expect(expectAcceptedBySidecar(sidecar).source).toMatchObject({ kind: 'files' });
  });

  it('JWT mode: a projected service-account token with an audience and the cluster CA, no X.509 identity', async () => {
    // automountServiceAccountToken: false, so no volumes array at all: the patch creates it.
    const pod = deploymentPod(
      {
        'spiffe-sidecar.io/inject': 'true',
        'spiffe-sidecar.io/mode': 'jwt',
        'spiffe-sidecar.io/app-port': '8080',
        'spiffe-sidecar.io/jwt-audience': 'orders',
        'spiffe-sidecar.io/token-review': 'true',
        'spiffe-sidecar.io/allow': 'spiffe://cluster.local/ns/agents/*',
      },
      { automountServiceAccountToken: false },
    );
    delete pod.spec.volumes;
    delete pod.spec.containers[0].volumeMounts;
    const answer = await reviewPod(webhook.port, caPem, pod);
    expect(answer.patch?.map((op) => op.path)).toContain('/spec/volumes');
    const patched = await applyReviewPatch(pod, answer);
    expect(patched.spec.volumes).toEqual([
      {
        name: 'spiffe-sidecar-kubernetes',
        projected: {
          sources: [
            {
              serviceAccountToken: {
                audience: 'https://kubernetes.default.svc.cluster.local',
                expirationSeconds: 3600,
                path: 'token',
              },
            },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
          ],
        },
      },
    ]);
    const sidecar = sidecarOf(patched);
    expect(sidecar.args).toEqual([
      'run',
      '--admin-listen=0.0.0.0:15020',
      '--listen=0.0.0.0:8443',
      '--upstream=http://127.0.0.1:8080',
      '--allow=spiffe://cluster.local/ns/agents/*',
      '--auth-mode=jwt',
      '--jwt-audience=orders',
      '--unsafe-plaintext-jwt',
      '--jwt-issuer=k8s=https://kubernetes.default.svc.cluster.local',
      '--jwt-ca-file=/var/run/spiffe-sidecar/kubernetes/ca.crt',
      '--k8s-trust-domain=cluster.local',
      '--k8s-token-review',
      '--k8s-token-file=/var/run/spiffe-sidecar/kubernetes/token',
    ]);
    const config = expectAcceptedBySidecar(sidecar);
    expect(config.source).toBeUndefined();
    expect(config.auth).toMatchObject({
      mode: 'jwt',
      tokens: { audience: ['orders'], tokenReview: { intervalMs: 60_000 } },
    });
  });

  it('SPIRE mode with JWT callers, and an outbound-only caller with its egress routes', async () => {
    const server = deploymentPod({
      'spiffe-sidecar.io/inject': 'true',
      'spiffe-sidecar.io/auth-mode': 'jwt',
      'spiffe-sidecar.io/jwt-audience': 'orders, orders.shop.svc',
      'spiffe-sidecar.io/app-port': '8080',
      'spiffe-sidecar.io/allow': 'spiffe://example.org/ns/shop/sa/frontend',
    });
    const serverSidecar = sidecarOf(await applyReviewPatch(server, await reviewPod(webhook.port, caPem, server)));
    expect(serverSidecar.args).toEqual(
      expect.arrayContaining(['--auth-mode=jwt', '--jwt-audience=orders', '--jwt-audience=orders.shop.svc']),
    );
    // With an SVID to serve, bearer tokens come over TLS (RFC 6750 §5.3), as the caller's https route expects.
    expect(serverSidecar.args).toContain('--jwt-transport=tls');
    expect(expectAcceptedBySidecar(serverSidecar).auth).toMatchObject({ mode: 'jwt', transport: 'tls' });

    const caller = deploymentPod({
      'spiffe-sidecar.io/inject': 'true',
      'spiffe-sidecar.io/outbound': [
        '127.0.0.1:15001=https://orders.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/orders',
        '127.0.0.1:15002=https://payments.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/payments,auth=jwt,audience=payments',
      ].join('\n'),
    });
    const patched = await applyReviewPatch(caller, await reviewPod(webhook.port, caPem, caller));
    const sidecar = sidecarOf(patched);
    expect(sidecar.args).toEqual([
      'run',
      '--admin-listen=0.0.0.0:15020',
      '--outbound=127.0.0.1:15001=https://orders.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/orders',
      '--outbound=127.0.0.1:15002=https://payments.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/payments,auth=jwt,audience=payments',
    ]);
    // Nothing listens for callers: only the admin port is declared.
    expect(sidecar.ports).toEqual([{ name: 'spiffe-admin', containerPort: 15020, protocol: 'TCP' }]);
    const config = expectAcceptedBySidecar(sidecar);
    expect(config.inbound).toBe(false);
    expect(config.outbound.map((r) => r.remote.origin)).toEqual([
      'https://orders.shop.svc:8443',
      'https://payments.shop.svc:8443',
    ]);
  });

  it('a policy from a ConfigMap, instead of allow rules', async () => {
    const pod = deploymentPod({
      'spiffe-sidecar.io/inject': 'true',
      'spiffe-sidecar.io/app-port': '8080',
      'spiffe-sidecar.io/policy-configmap': 'orders-policy',
    });
    const patched = await applyReviewPatch(pod, await reviewPod(webhook.port, caPem, pod));
    expect((patched.spec.volumes as unknown[]).at(-1)).toEqual({
      name: 'spiffe-sidecar-policy',
      configMap: { name: 'orders-policy' },
    });
    const sidecar = sidecarOf(patched);
    expect(sidecar.args).toContain('--policy-file=/etc/spiffe-sidecar/policy/policy.yaml');
    expect(sidecar.args.some((a) => a.startsWith('--allow'))).toBe(false);
    expect(sidecar.volumeMounts).toContainEqual({
      name: 'spiffe-sidecar-policy',
      mountPath: '/etc/spiffe-sidecar/policy',
      readOnly: true,
    });
    expect(expectAcceptedBySidecar(sidecar).policy).toEqual({
      file: '/etc/spiffe-sidecar/policy/policy.yaml',
      dryRun: false,
    });
  });

  it('the injected file-mode sidecar starts from its own arguments and reports ready on /readyz', async () => {
    const pod = deploymentPod({
      'spiffe-sidecar.io/inject': 'true',
      'spiffe-sidecar.io/mode': 'file',
      'spiffe-sidecar.io/secret': 'orders-svid',
      'spiffe-sidecar.io/app-port': '8080',
      'spiffe-sidecar.io/allow': 'spiffe://example.org/ns/shop/sa/frontend',
    });
    const sidecar = sidecarOf(await applyReviewPatch(pod, await reviewPod(webhook.port, caPem, pod)));
    // The Secret volume, as kubelet would mount it: real files where the mount path says.
    const ca = await createDevCa({ trustDomain: 'example.org' });
    const secretDir = join(ws.path, 'orders-svid');
    await mkdir(secretDir);
    await writeServingFiles(
      secretDir,
      await issueSvid(ca, { id: 'spiffe://example.org/ns/shop/sa/orders' }),
      ca.certPem,
    );
    const mountPath = (sidecar.volumeMounts as { mountPath: string }[])[0].mountPath;
    // Only the pod's network differs: ephemeral loopback ports, and the test's app as the upstream.
    const args = sidecar.args.map((a) =>
      a
        .replace(mountPath, secretDir)
        .replace(/^--listen=.*/, '--listen=127.0.0.1:0')
        .replace(/^--admin-listen=.*/, '--admin-listen=127.0.0.1:0')
        .replace(/^--upstream=.*/, `--upstream=${ws.app.url}`),
    );
    const process = startCli(args);
    try {
      const started = await waitForEvent(process, 'started');
      expect(started.spiffe_id).toBe('spiffe://example.org/ns/shop/sa/orders');
      const admin = (started.admin as { port: number }).port;
      const ready = await fetch(`http://127.0.0.1:${admin}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ ready: true });
    } finally {
      process.child.kill('SIGTERM');
      await process.exited;
    }
  });
});
