// What the webhook must NOT do: touch pods that did not ask, that opted out, that already have the
// sidecar (injection is idempotent), that share the node's network or live in kube-system; and turn a bad
// annotation into a broken pod. Every bad annotation is an admission denial whose message names it, and
// no annotation value can reach the container as anything but the one flag value it stands for.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyReviewPatch,
  callWebhook,
  createWebhookCa,
  deploymentPod,
  issueServingCertificate,
  type PodFixture,
  type RunningWebhook,
  reviewPod,
  startWebhook,
  stopWebhook,
  writeServingSecret,
} from '../helpers/admission.js';
import { tempDir } from '../helpers/pki.js';

let caPem: string;
let webhook: RunningWebhook;
let removeDir: () => Promise<void>;

beforeAll(async () => {
  const dir = await tempDir();
  removeDir = dir.remove;
  const ca = await createWebhookCa();
  caPem = ca.certPem;
  await writeServingSecret(join(dir.path, 'tls'), await issueServingCertificate(ca));
  webhook = await startWebhook(join(dir.path, 'tls'));
});
afterAll(async () => {
  await stopWebhook(webhook);
  await removeDir?.();
});

const VALID = {
  'spiffe-sidecar.io/inject': 'true',
  'spiffe-sidecar.io/app-port': '8080',
  'spiffe-sidecar.io/allow': 'spiffe://example.org/ns/shop/sa/frontend',
};

async function expectUnchanged(pod: PodFixture, options: Parameters<typeof reviewPod>[3] = {}) {
  const answer = await reviewPod(webhook.port, caPem, pod, options);
  expect(answer.response.uid).toBe(answer.uid);
  expect(answer.response.allowed).toBe(true);
  expect(answer.response.patch).toBeUndefined();
  expect(answer.response.patchType).toBeUndefined();
  return answer;
}

async function expectDenied(annotations: Record<string, string>, spec: Record<string, unknown> = {}) {
  const answer = await reviewPod(webhook.port, caPem, deploymentPod(annotations, spec));
  expect(answer.response.uid).toBe(answer.uid);
  expect(answer.response.allowed, JSON.stringify(answer.response)).toBe(false);
  expect(answer.response.patch).toBeUndefined();
  expect(answer.response.status?.code).toBe(400);
  return answer.response.status?.message ?? '';
}

describe('the inject webhook leaves alone the pods it must not change', () => {
  it('a pod that does not ask, and one that opts out of a namespace that opted in', async () => {
    await expectUnchanged(deploymentPod(undefined));
    await expectUnchanged(deploymentPod({ 'spiffe-sidecar.io/app-port': '8080' }));
    await expectUnchanged(deploymentPod({ ...VALID, 'spiffe-sidecar.io/inject': 'false' }), {
      path: '/inject-namespace',
    });
  });

  it('a namespace that opted in gets the sidecar without the inject annotation', async () => {
    const rest: Record<string, string> = { ...VALID };
    delete rest['spiffe-sidecar.io/inject'];
    const answer = await reviewPod(webhook.port, caPem, deploymentPod(rest), { path: '/inject-namespace' });
    expect(answer.response.allowed).toBe(true);
    expect(answer.patch?.length).toBeGreaterThan(0);
  });

  it('never twice: a pod already injected, or one with a container of that name, is untouched', async () => {
    const pod = deploymentPod(VALID);
    const injected = await applyReviewPatch(pod, await reviewPod(webhook.port, caPem, pod));
    await expectUnchanged(injected);
    // A namespace opt-in reinvocation sees the same pod again.
    await expectUnchanged(injected, { path: '/inject-namespace' });
    const own = deploymentPod(VALID, {
      containers: [...pod.spec.containers, { name: 'spiffe-sidecar', image: 'ghcr.io/example/own:1' }],
    });
    // Not ours: the pod asked for a sidecar it will not get, which its author should hear of.
    expect((await expectUnchanged(own)).response.warnings?.[0]).toMatch(/already has a container named spiffe-sidecar/);
    // Ours (the status annotation says so): nothing to say.
    expect((await expectUnchanged(injected)).response.warnings).toBeUndefined();
  });

  it('hostNetwork pods and kube-system are skipped, with a warning when they asked', async () => {
    const hostNetwork = await expectUnchanged(deploymentPod(VALID, { hostNetwork: true }));
    expect(hostNetwork.response.warnings?.[0]).toMatch(/hostNetwork/);
    // A Windows pod would get a Linux image and a Linux security context, which the API server refuses.
    const windows = await expectUnchanged(deploymentPod(VALID, { os: { name: 'windows' } }));
    expect(windows.response.warnings?.[0]).toMatch(/Windows pod/);
    const system = await expectUnchanged(deploymentPod(VALID), { namespace: 'kube-system' });
    expect(system.response.warnings?.[0]).toMatch(/kube-system/);
    await expectUnchanged(deploymentPod(VALID), { namespace: 'kube-system', path: '/inject-namespace' });
    // Log lines are written asynchronously: they may trail the answer a little.
    await expect.poll(() => webhook.running.stdout()).toMatch(/"event":"pod_skipped".*"reason":"host_network"/);
  });

  it('anything but a pod CREATE is allowed as it is', async () => {
    await expectUnchanged(deploymentPod(VALID), { operation: 'UPDATE' });
  });
});

describe('the inject webhook denies bad annotations with a message that names them', () => {
  it.each([
    ['inject is not true or false', { 'spiffe-sidecar.io/inject': 'yes' }, /inject.*use one of true, false/],
    ['an unknown mode', { 'spiffe-sidecar.io/mode': 'vault' }, /mode.*"vault".*spire, file, jwt/],
    ['an unknown auth mode', { 'spiffe-sidecar.io/auth-mode': 'basic' }, /auth-mode.*mtls, jwt/],
    ['port 0', { 'spiffe-sidecar.io/app-port': '0' }, /app-port "0": a port from 1 to 65535/],
    ['port 65536', { 'spiffe-sidecar.io/port': '65536' }, /port "65536": a port from 1 to 65535/],
    ['a port with a suffix', { 'spiffe-sidecar.io/app-port': '8080; rm -rf /' }, /app-port "8080; rm -rf \/"/],
    ['no app port', { 'spiffe-sidecar.io/app-port': '' }, /app-port "": a port/],
    [
      'a misspelt annotation',
      { 'spiffe-sidecar.io/alow': 'spiffe://example.org/x' },
      /spiffe-sidecar.io\/alow.*unknown/,
    ],
    [
      'a dot segment in a rule',
      { 'spiffe-sidecar.io/allow': 'spiffe://example.org/a/../b' },
      /allow.*invalid allow rule/,
    ],
    ['a partial wildcard', { 'spiffe-sidecar.io/allow': 'spiffe://example.org/app-*' }, /allow.*partial wildcards/],
    // A value cannot smuggle in a flag: each item must be an allow rule.
    ['a flag in the allow list', { 'spiffe-sidecar.io/allow': 'spiffe://example.org/x --allow-any' }, /"--allow-any"/],
    ['a flag as an allow rule', { 'spiffe-sidecar.io/allow': '--allow-any=true' }, /allow.*invalid allow rule/],
    [
      'quotes and spaces in a route',
      { 'spiffe-sidecar.io/outbound': '127.0.0.1:15001=https://a.b:1,id=spiffe://td/x";--unsafe-upstream' },
      /outbound.*not a route/,
    ],
    [
      'a route the sidecar refuses',
      { 'spiffe-sidecar.io/outbound': '127.0.0.1:15001=http://orders.shop.svc:8080' },
      /sidecar would refuse.*auth=mtls needs an https:\/\/ remote/,
    ],
    [
      'a route on a non-loopback address',
      { 'spiffe-sidecar.io/outbound': '0.0.0.0:15001=https://o.s.svc:1,id=spiffe://td/o' },
      /is not loopback/,
    ],
    [
      'a token file',
      {
        'spiffe-sidecar.io/outbound': '127.0.0.1:1=https://o.s:1,id=spiffe://t/o,auth=jwt,audience=o,token-file=/etc/x',
      },
      /token-file is not available/,
    ],
    ['file mode without a Secret', { 'spiffe-sidecar.io/mode': 'file' }, /secret is required in file mode/],
    ['a Secret in SPIRE mode', { 'spiffe-sidecar.io/secret': 'orders-svid' }, /only file mode reads a Secret/],
    [
      'a path as a Secret name',
      { 'spiffe-sidecar.io/mode': 'file', 'spiffe-sidecar.io/secret': '../../etc' },
      /secret.*not a Kubernetes object name/,
    ],
    [
      'a policy and allow rules',
      { 'spiffe-sidecar.io/policy-configmap': 'orders-policy' },
      /a policy replaces spiffe-sidecar.io\/allow/,
    ],
    ['JWT callers without an audience', { 'spiffe-sidecar.io/auth-mode': 'jwt' }, /jwt-audience is required/],
    [
      'mTLS in JWT mode',
      { 'spiffe-sidecar.io/mode': 'jwt', 'spiffe-sidecar.io/auth-mode': 'mtls' },
      /jwt mode has no X.509 identity/,
    ],
    ['TokenReview outside JWT mode', { 'spiffe-sidecar.io/token-review': 'true' }, /TokenReview is for jwt mode/],
    ['the sidecar port as the app port', { 'spiffe-sidecar.io/app-port': '8443' }, /port of the sidecar itself/],
    ['the admin port as the sidecar port', { 'spiffe-sidecar.io/port': '15020' }, /is the sidecar's admin port/],
    [
      "an outbound route on the sidecar's port",
      { 'spiffe-sidecar.io/outbound': '127.0.0.1:8443=https://o.s.svc:1,id=spiffe://td/o' },
      /outbound: LISTEN port 8443 is the sidecar's own/,
    ],
    [
      "an outbound route on the sidecar's admin port",
      { 'spiffe-sidecar.io/outbound': '127.0.0.1:15020=https://o.s.svc:1,id=spiffe://td/o' },
      /LISTEN port 15020 is the sidecar's own/,
    ],
    [
      "an outbound route on the app's port",
      { 'spiffe-sidecar.io/outbound': '127.0.0.1:8080=https://o.s.svc:1,id=spiffe://td/o' },
      /LISTEN port 8080 is the app's \(annotation spiffe-sidecar.io\/app-port\)/,
    ],
    [
      'two outbound routes on one port',
      {
        'spiffe-sidecar.io/outbound':
          '127.0.0.1:15001=https://o.s.svc:1,id=spiffe://td/o 127.0.0.1:15001=https://p.s.svc:1,id=spiffe://td/p',
      },
      /LISTEN port 15001 is also the LISTEN port of another route/,
    ],
    [
      'an over-long value',
      { 'spiffe-sidecar.io/allow': `spiffe://example.org/${'a'.repeat(9000)}` },
      /longer than 8192/,
    ],
  ])('%s', async (_, annotations, message) => {
    expect(await expectDenied({ ...VALID, ...annotations })).toMatch(message);
  });

  it('no allow rule and no policy: default deny is deliberate, so say which annotation to add', async () => {
    const rest: Record<string, string> = { ...VALID };
    delete rest['spiffe-sidecar.io/allow'];
    expect(await expectDenied(rest)).toMatch(/allow or spiffe-sidecar.io\/policy-configmap is required/);
  });

  it('a sidecar port below 1024 is injected with a warning: it binds only where the node allows it', async () => {
    const pod = deploymentPod({ ...VALID, 'spiffe-sidecar.io/port': '443' });
    const answer = await reviewPod(webhook.port, caPem, pod);
    expect(answer.response.allowed).toBe(true);
    expect(answer.response.patch).toBeDefined();
    expect(answer.response.warnings?.[0]).toMatch(/port 443 is below 1024.*ip_unprivileged_port_start/);
    // The usual port: no warning.
    expect((await reviewPod(webhook.port, caPem, deploymentPod(VALID))).response.warnings).toBeUndefined();
  });

  it('a sidecar port the app already uses, and a volume name already taken', async () => {
    const app = deploymentPod(VALID).spec.containers[0];
    expect(
      await expectDenied(VALID, { containers: [{ ...app, ports: [{ containerPort: 15020, protocol: 'TCP' }] }] }),
    ).toMatch(/port 15020 \(spiffe-admin\) is already used.*annotation spiffe-sidecar.io\/port/);
    // A route's port that a container of the pod declares (a metrics port, say) is taken too.
    expect(
      await expectDenied(
        { ...VALID, 'spiffe-sidecar.io/outbound': '127.0.0.1:9090=https://o.s.svc:1,id=spiffe://td/o' },
        { containers: [{ ...app, ports: [{ containerPort: 9090, protocol: 'TCP' }] }] },
      ),
    ).toMatch(/LISTEN port 9090 is declared by a container of the pod/);
    // A UDP port of the same number (statsd's 8125, say) is no conflict for a TCP listener.
    const udp = await reviewPod(
      webhook.port,
      caPem,
      deploymentPod(
        { ...VALID, 'spiffe-sidecar.io/outbound': '127.0.0.1:8125=https://o.s.svc:1,id=spiffe://td/o' },
        { containers: [{ ...app, ports: [{ containerPort: 8125, protocol: 'UDP' }] }] },
      ),
    );
    expect(udp.response.allowed).toBe(true);
    expect(udp.response.patch).toBeDefined();
    expect(
      await expectDenied(VALID, {
        volumes: [{ name: 'spiffe-sidecar-workload-api', emptyDir: {} }],
      }),
    ).toMatch(/already has a volume named spiffe-sidecar-workload-api/);
  });

  it('denials are logged, and the webhook keeps answering', async () => {
    await expect.poll(() => webhook.running.stdout()).toMatch(/"event":"pod_denied"/);
    const health = await callWebhook(webhook.port, caPem, { method: 'GET', path: '/healthz' });
    expect(health.status).toBe(200);
  });
});
