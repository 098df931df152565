// The Kubernetes side of the inject webhook, for tests: a serving certificate for it (made at test time),
// the real `spiffe-sidecar inject-webhook` process, AdmissionReview bodies shaped like the API server's,
// HTTPS calls as the API server makes them (verifying the service DNS name), and the JSONPatch applied
// with a real library, then the pod validated against the Kubernetes schema.
import { randomUUID } from 'node:crypto';
import { request } from 'node:https';
import { join } from 'node:path';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { applyPatch } from 'rfc6902';
import { type Issuer, issueCertificate } from '../../src/certs/dev-ca.js';
import { x509 } from '../../src/spiffe/x509-library.js';
import { validateKubernetesObject } from './kubernetes-schema.js';
import { type Running, startCli, waitForEvent } from './process.js';
import { writeSecretVolume } from './secret-volume.js';

/** The name the API server dials: <service>.<namespace>.svc, as in the chart. */
export const WEBHOOK_DNS_NAME = 'spiffe-sidecar-injector.spiffe-sidecar.svc';
export const SIDECAR_IMAGE = 'ghcr.io/example/spiffe-sidecar:0.1.0';

/** A CA for the webhook's serving certificate (cert-manager's role in a cluster). */
export async function createWebhookCa(): Promise<Issuer> {
  const issued = await issueCertificate(undefined, {
    subject: 'CN=test webhook CA',
    isCA: true,
    keyUsage: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    notAfter: new Date(Date.now() + 24 * 3_600_000),
  });
  return { certPem: issued.certPem, keys: issued.keys, cert: issued.cert, chainPem: '' };
}

export function issueServingCertificate(ca: Issuer, template: Parameters<typeof issueCertificate>[1] = {}) {
  return issueCertificate(ca, {
    subject: `CN=${WEBHOOK_DNS_NAME}`,
    dnsNames: [WEBHOOK_DNS_NAME],
    keyUsage: x509.KeyUsageFlags.digitalSignature,
    extKeyUsage: [x509.ExtendedKeyUsage.serverAuth],
    ...template,
  });
}

/** Writes tls.crt and tls.key the way kubelet updates a Secret volume. */
export async function writeServingSecret(dir: string, cert: { chainPem: string; keyPem: string }): Promise<void> {
  await writeSecretVolume(dir, { 'tls.crt': cert.chainPem, 'tls.key': cert.keyPem });
}

export interface RunningWebhook {
  running: Running;
  port: number;
}

/** Starts the real CLI on an ephemeral loopback port with the Secret volume in `tlsDir`. */
export async function startWebhook(tlsDir: string, ...extra: string[]): Promise<RunningWebhook> {
  const running = startCli([
    'inject-webhook',
    '--listen',
    '127.0.0.1:0',
    '--tls-cert-file',
    join(tlsDir, 'tls.crt'),
    '--tls-key-file',
    join(tlsDir, 'tls.key'),
    '--image',
    SIDECAR_IMAGE,
    '--log-level',
    'debug',
    ...extra,
  ]);
  const started = await waitForEvent(running, 'webhook_started');
  return { running, port: (started.listen as { port: number }).port };
}

export async function stopWebhook(webhook: RunningWebhook | undefined): Promise<void> {
  if (!webhook || webhook.running.child.exitCode !== null) return;
  webhook.running.child.kill('SIGTERM');
  await webhook.running.exited;
}

export interface HttpsAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  peer: PeerCertificate;
}

/** One HTTPS request to the webhook, trusting only `caPem` and checking the service DNS name. */
export function callWebhook(
  port: number,
  caPem: string,
  options: { method?: string; path?: string; body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        servername: WEBHOOK_DNS_NAME,
        ca: caPem,
        method: options.method ?? 'POST',
        path: options.path ?? '/inject',
        headers: { 'content-type': 'application/json', ...options.headers },
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
            peer: (res.socket as TLSSocket).getPeerCertificate(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface PodFixture {
  apiVersion?: string;
  kind?: string;
  metadata: Record<string, unknown>;
  spec: Record<string, unknown> & { containers: Record<string, unknown>[] };
}

/**
 * A pod as a Deployment's ReplicaSet creates it, as the webhook sees it: after defaulting and after the
 * ServiceAccount admission plugin (the kube-api-access volume and mounts), with a generateName.
 */
export function deploymentPod(annotations: Record<string, string> | undefined, spec: Record<string, unknown> = {}) {
  const pod: PodFixture = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'orders-7d9f8b6c5-',
      namespace: 'shop',
      labels: { app: 'orders', 'pod-template-hash': '7d9f8b6c5' },
      ...(annotations ? { annotations } : {}),
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: 'orders-7d9f8b6c5',
          uid: '5e0c2a4e-1b53-4a0e-9a43-3d7e1c0f9b21',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      containers: [
        {
          name: 'orders',
          image: 'ghcr.io/example/orders:1.4.2',
          ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
          resources: {},
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
          volumeMounts: [
            {
              name: 'kube-api-access-7xk2p',
              readOnly: true,
              mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
            },
          ],
        },
      ],
      volumes: [
        {
          name: 'kube-api-access-7xk2p',
          projected: {
            defaultMode: 420,
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              {
                downwardAPI: {
                  items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }],
                },
              },
            ],
          },
        },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'orders',
      serviceAccount: 'orders',
      securityContext: {},
      schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
      ...spec,
    },
  };
  return pod;
}

/** An AdmissionReview as the API server posts it for a pod CREATE. */
export function admissionReview(
  pod: PodFixture,
  {
    namespace = 'shop',
    operation = 'CREATE',
    uid = randomUUID(),
  }: { namespace?: string; operation?: string; uid?: string } = {},
) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation,
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: '0b5b3c7e-44a1-4b8b-9d43-4f0f4d0a1c11',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
}

export interface ReviewAnswer {
  status: number;
  uid: string;
  response: {
    uid: string;
    allowed: boolean;
    patchType?: string;
    patch?: string;
    status?: { code: number; message: string };
    warnings?: string[];
  };
  /** The decoded JSONPatch, if any. */
  patch: { op: string; path: string; value: unknown }[] | undefined;
}

/** Posts a review of `pod` and decodes the answer. */
export async function reviewPod(
  port: number,
  caPem: string,
  pod: PodFixture,
  options: { path?: string; namespace?: string; operation?: string } = {},
): Promise<ReviewAnswer> {
  const body = admissionReview(pod, options);
  const answer = await callWebhook(port, caPem, { path: options.path, body: JSON.stringify(body) });
  if (answer.status !== 200) throw new Error(`HTTP ${answer.status}: ${answer.text}`);
  const review = JSON.parse(answer.text) as { apiVersion: string; kind: string; response: ReviewAnswer['response'] };
  if (review.apiVersion !== 'admission.k8s.io/v1' || review.kind !== 'AdmissionReview')
    throw new Error(`not an AdmissionReview: ${answer.text}`);
  const patch = review.response.patch
    ? (JSON.parse(Buffer.from(review.response.patch, 'base64').toString('utf8')) as ReviewAnswer['patch'])
    : undefined;
  return { status: answer.status, uid: body.request.uid, response: review.response, patch };
}

/** Applies the patch as the API server does (RFC 6902), then validates the pod strictly. */
export async function applyReviewPatch(pod: PodFixture, answer: ReviewAnswer): Promise<PodFixture> {
  const patched = structuredClone(pod);
  const results = applyPatch(patched, (answer.patch ?? []) as Parameters<typeof applyPatch>[1]);
  const failed = results.filter((r) => r !== null);
  if (failed.length > 0) throw new Error(`the patch does not apply: ${failed.map((e) => e?.message).join('; ')}`);
  await validateKubernetesObject(patched as { apiVersion: string; kind: string });
  return patched;
}
