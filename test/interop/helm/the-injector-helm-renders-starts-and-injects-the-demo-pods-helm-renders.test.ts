// What helm renders works together with the code, end to end without a cluster: the real injector started with
// exactly the arguments of the Deployment helm rendered (only where it listens and where the mounted Secret is
// are local), answering its rendered probes over HTTPS; then the demo's pods, as helm renders them in SPIRE, file
// and JWT mode, posted as the API server would (only where the rendered MutatingWebhookConfiguration says it
// calls), come back with a JSONPatch that yields a pod passing the Kubernetes schema, whose sidecar serves on the
// port the demo's Service targets, with the identity source each mode's values ask for.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../../src/cli.js';
import { buildConfig } from '../../../src/config.js';
import { ANNOTATIONS } from '../../../src/webhook/annotations.js';
import { SIDECAR_CONTAINER_NAME, SPIFFE_CSI_DRIVER } from '../../../src/webhook/sidecar-container.js';
import {
  applyReviewPatch,
  callWebhook,
  createWebhookCa,
  issueServingCertificate,
  type PodFixture,
  reviewPod,
  WEBHOOK_DNS_NAME,
  writeServingSecret,
} from '../../helpers/admission.js';
import { tempDir } from '../../helpers/pki.js';
import { type Running, startCli, waitForEvent } from '../../helpers/process.js';
import { CHART, DEMO, find, type Obj, render } from './helm.js';

const NS = 'spiffe-sidecar';
let dir: { path: string; remove: () => Promise<void> };
let injector: Obj[];
let running: Running | undefined;
let port: number;
let caPem: string;

beforeAll(async () => {
  dir = await tempDir('spiffe-sidecar-helm-injector-');
  ({ objects: injector } = await render('spiffe-sidecar', CHART, NS));
  const container = find(injector, 'Deployment', 'spiffe-sidecar-injector').spec.template.spec.containers[0];
  const mountPath: string = container.volumeMounts[0].mountPath;
  const ca = await createWebhookCa();
  caPem = ca.certPem;
  const tls = join(dir.path, 'tls');
  await writeServingSecret(tls, await issueServingCertificate(ca));
  const args = (container.args as string[]).map((arg) =>
    arg.startsWith('--listen=') ? '--listen=127.0.0.1:0' : arg.replace(`=${mountPath}/`, `=${tls}/`),
  );
  // Every rendered argument is used as is but those two.
  expect(args.filter((a, i) => a !== container.args[i])).toHaveLength(3);
  running = startCli(args);
  const started = await waitForEvent(running, 'webhook_started', 20_000);
  port = (started.listen as { port: number }).port;
}, 90_000);

afterAll(async () => {
  if (running && running.child.exitCode === null) {
    running.child.kill('SIGTERM');
    await running.exited;
  }
  await dir?.remove();
});

describe('the injector as helm renders it', () => {
  it('is the Service name the API server dials, and answers its rendered probes over HTTPS', async () => {
    const mwc = find(injector, 'MutatingWebhookConfiguration', 'spiffe-sidecar-injector');
    const { name, namespace } = mwc.webhooks[0].clientConfig.service;
    expect(`${name}.${namespace}.svc`).toBe(WEBHOOK_DNS_NAME);
    const container = find(injector, 'Deployment', 'spiffe-sidecar-injector').spec.template.spec.containers[0];
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      expect(probe.httpGet.scheme).toBe('HTTPS');
      const answer = await callWebhook(port, caPem, { method: 'GET', path: probe.httpGet.path });
      expect(answer.status, `${probe.httpGet.path}: ${answer.text}`).toBe(200);
    }
  });
});

/** A pod as the Deployment's ReplicaSet would create it from the rendered template. */
function podOf(deployment: Obj): PodFixture {
  const template = deployment.spec.template;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: `${deployment.metadata.name}-5d8c7b9f4-`,
      namespace: 'demo',
      labels: { ...template.metadata.labels, 'pod-template-hash': '5d8c7b9f4' },
      ...(template.metadata.annotations ? { annotations: template.metadata.annotations } : {}),
    },
    spec: structuredClone(template.spec),
  };
}

/**
 * Which of the rendered webhooks the API server calls for a pod of an unlabelled namespace "demo": the namespace
 * selector (not excluded, not opted in) and, where there is one, the match condition, which is the CEL
 * expression below (asserted to be exactly it, then evaluated here).
 */
function webhooksCalled(mwc: Obj, pod: PodFixture): string[] {
  const namespaceLabels: Record<string, string> = { 'kubernetes.io/metadata.name': 'demo' };
  return mwc.webhooks
    .filter((webhook: Obj) =>
      webhook.namespaceSelector.matchExpressions.every((e: Obj) => {
        const value = namespaceLabels[e.key];
        return e.operator === 'NotIn' ? !e.values.includes(value) : e.values.includes(value);
      }),
    )
    .filter((webhook: Obj) =>
      (webhook.matchConditions ?? []).every((c: Obj) => {
        expect(c.expression).toBe(
          `has(object.metadata.annotations) && '${ANNOTATIONS.inject}' in object.metadata.annotations`,
        );
        const annotations = pod.metadata.annotations as Record<string, string> | undefined;
        return annotations !== undefined && ANNOTATIONS.inject in annotations;
      }),
    )
    .map((webhook: Obj) => webhook.clientConfig.service.path);
}

type Container = Obj & { name: string; args: string[]; env?: { name: string; value: string }[] };

describe.each(['spire', 'file', 'jwt'])('the demo in %s mode, as helm renders it', (mode) => {
  let demo: Obj[];
  beforeAll(async () => {
    ({ objects: demo } = await render('demo', DEMO, 'demo', ['-f', join(DEMO, `values-${mode}.yaml`)]));
  }, 60_000);

  it.each(['echo', 'caller'])('%s: injected as the mode asks, into a valid pod', async (name) => {
    const mwc = find(injector, 'MutatingWebhookConfiguration', 'spiffe-sidecar-injector');
    const pod = podOf(find(demo, 'Deployment', name));
    const called = webhooksCalled(mwc, pod);
    if (mode === 'jwt' && name === 'caller') {
      // The JWT caller has no sidecar: the API server does not even call the injector for it.
      expect(called).toEqual([]);
      return;
    }
    expect(called).toEqual(['/inject']);
    const answer = await reviewPod(port, caPem, pod, { path: '/inject', namespace: 'demo' });
    expect(answer.response.allowed, JSON.stringify(answer.response.status)).toBe(true);
    const patched = await applyReviewPatch(pod, answer);
    const sidecar = (patched.spec.initContainers as Container[])[0];
    expect(sidecar.name).toBe(SIDECAR_CONTAINER_NAME);
    expect(sidecar.restartPolicy).toBe('Always');
    // The image and resources the chart's values gave the injector.
    expect(sidecar.image).toBe('spiffe-sidecar:0.1.0');
    expect(sidecar.resources).toMatchObject({ requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } });
    // The sidecar itself accepts what it was given.
    const command = parseCommandLine(
      sidecar.args,
      Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, e.value])),
    );
    expect(command.command).toBe('run');
    buildConfig((command as { options: Parameters<typeof buildConfig>[0] }).options);
    const volumes = (patched.spec.volumes ?? []) as Obj[];
    if (mode === 'spire') expect(volumes.some((v) => v.csi?.driver === SPIFFE_CSI_DRIVER)).toBe(true);
    if (mode === 'file') {
      const secret = name === 'echo' ? 'echo-svid' : 'caller-svid';
      expect(volumes.some((v) => v.secret?.secretName === secret)).toBe(true);
    }
    if (name === 'echo') {
      // Callers reach echo through the Service, whose target port is the sidecar's.
      const service = find(demo, 'Service', 'echo');
      const ports = ((sidecar.ports ?? []) as Obj[]).map((p) => p.containerPort);
      expect(ports).toContain(service.spec.ports[0].targetPort);
    }
  });
});
