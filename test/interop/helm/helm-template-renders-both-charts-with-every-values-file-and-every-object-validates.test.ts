// The real `helm template` renders the injector chart and the demo chart, with the default values and with every
// values file the repository ships (the demo's values-*.yaml, exactly as the README's `helm install` commands pass
// them), and what it renders would be accepted and would work together: every built-in object passes the
// Kubernetes schema with no unknown field (test/helpers/kubernetes-schema.ts, as test/kubernetes does), the
// cert-manager objects pass cert-manager's v1 API, every reference between objects resolves, and the injector's
// rendered flags are ones the real CLI parses into the configuration the values asked for.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { beforeAll, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { parseCommandLine } from '../../../src/cli.js';
import { ANNOTATIONS } from '../../../src/webhook/annotations.js';
import { parseWebhookOptions } from '../../../src/webhook/options.js';
import { isBuiltInKind, validateKubernetesObject } from '../../helpers/kubernetes-schema.js';
import { readme } from '../../helpers/readme.js';
import { tempDir } from '../../helpers/pki.js';
import { CHART, DEMO, find, type Obj, ROOT, render, type Render } from './helm.js';

const CLUSTER_SCOPED = new Set(['MutatingWebhookConfiguration', 'ClusterRole', 'ClusterRoleBinding']);

/**
 * cert-manager's v1 API for the two kinds the chart renders (cert-manager.io/v1 Issuer and Certificate, from the
 * CRDs of cert-manager 1.x: every spec field they have, the enums of the ones the chart sets), strict as
 * kubernetes-schema.ts is for built-in kinds: an unknown or misspelt field fails (the API server would prune it).
 * Hand-written: the CRDs are not in this repository and the tests fetch nothing.
 */
const CERT_MANAGER: Record<string, Obj> = {
  Issuer: {
    type: 'object',
    additionalProperties: false,
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      apiVersion: { const: 'cert-manager.io/v1' },
      kind: { const: 'Issuer' },
      metadata: { type: 'object' },
      spec: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        maxProperties: 1,
        properties: {
          acme: { type: 'object' },
          ca: { type: 'object' },
          selfSigned: {
            type: 'object',
            additionalProperties: false,
            properties: { crlDistributionPoints: { type: 'array', items: { type: 'string' } } },
          },
          vault: { type: 'object' },
          venafi: { type: 'object' },
        },
      },
    },
  },
  Certificate: {
    type: 'object',
    additionalProperties: false,
    required: ['apiVersion', 'kind', 'metadata', 'spec'],
    properties: {
      apiVersion: { const: 'cert-manager.io/v1' },
      kind: { const: 'Certificate' },
      metadata: { type: 'object' },
      spec: {
        type: 'object',
        additionalProperties: false,
        required: ['issuerRef', 'secretName'],
        properties: {
          additionalOutputFormats: { type: 'array' },
          commonName: { type: 'string' },
          dnsNames: { type: 'array', items: { type: 'string' } },
          duration: { type: 'string', pattern: '^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$' },
          emailAddresses: { type: 'array', items: { type: 'string' } },
          encodeUsagesInRequest: { type: 'boolean' },
          ipAddresses: { type: 'array', items: { type: 'string' } },
          isCA: { type: 'boolean' },
          issuerRef: {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            properties: { group: { type: 'string' }, kind: { type: 'string' }, name: { type: 'string' } },
          },
          keystores: { type: 'object' },
          literalSubject: { type: 'string' },
          nameConstraints: { type: 'object' },
          otherNames: { type: 'array' },
          privateKey: {
            type: 'object',
            additionalProperties: false,
            properties: {
              algorithm: { enum: ['RSA', 'ECDSA', 'Ed25519'] },
              encoding: { enum: ['PKCS1', 'PKCS8'] },
              rotationPolicy: { enum: ['Never', 'Always'] },
              size: { type: 'integer' },
            },
          },
          renewBefore: { type: 'string', pattern: '^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$' },
          renewBeforePercentage: { type: 'integer' },
          revisionHistoryLimit: { type: 'integer' },
          secretName: { type: 'string', minLength: 1 },
          secretTemplate: { type: 'object' },
          signatureAlgorithm: { type: 'string' },
          subject: { type: 'object' },
          uris: { type: 'array', items: { type: 'string' } },
          usages: { type: 'array', items: { type: 'string' } },
        },
      },
    },
  },
};
const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const certManagerValidators = Object.fromEntries(
  Object.entries(CERT_MANAGER).map(([kind, schema]) => [kind, ajv.compile(schema)]),
);

/** Every object helm rendered: built-in kinds against the Kubernetes schema, cert-manager's against its API. */
async function validateAll(objects: Obj[]): Promise<void> {
  for (const object of objects) {
    const at = `${object.kind}/${object.metadata?.name}`;
    if (isBuiltInKind(object.apiVersion, object.kind)) {
      await validateKubernetesObject(object as { apiVersion: string; kind: string });
    } else {
      const validate = certManagerValidators[object.kind];
      expect(validate, `${at}: a kind no one validates (${object.apiVersion})`).toBeDefined();
      expect(validate(object), `${at}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    }
  }
}

function expectInNamespace(objects: Obj[], namespace: string): void {
  for (const o of objects) {
    const at = `${o.kind}/${o.metadata.name}`;
    expect(o.metadata.namespace, at).toBe(CLUSTER_SCOPED.has(o.kind) ? undefined : namespace);
  }
}

function expectSelectorMatches(selector: Record<string, string>, labels: Record<string, string>, at: string): void {
  expect(Object.keys(selector).length, `${at}: an empty selector`).toBeGreaterThan(0);
  for (const [k, v] of Object.entries(selector)) expect(labels[k], `${at}: ${k}`).toBe(v);
}

const kinds = (r: Render) => r.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();

/** The injector chart as the README installs it: release spiffe-sidecar in namespace spiffe-sidecar. */
const RELEASE = 'spiffe-sidecar';
const NS = 'spiffe-sidecar';
const NAME = 'spiffe-sidecar-injector';

const INJECTOR_CORE = [
  `Deployment/${NAME}`,
  `MutatingWebhookConfiguration/${NAME}`,
  `Service/${NAME}`,
  `ServiceAccount/${NAME}`,
];
const CERTGEN = [
  `ClusterRole/${NAME}-certgen`,
  `ClusterRoleBinding/${NAME}-certgen`,
  `Job/${NAME}-certgen-post`,
  `Job/${NAME}-certgen-pre`,
  `Role/${NAME}-certgen`,
  `RoleBinding/${NAME}-certgen`,
  `ServiceAccount/${NAME}-certgen`,
];
const CERT_MANAGER_OBJECTS = [
  `Certificate/${NAME}`,
  `Certificate/${NAME}-ca`,
  `Issuer/${NAME}`,
  `Issuer/${NAME}-selfsigned`,
];

/** Every value the defaults leave empty, set: pull secrets, scheduling, a sidecar image of its own, the token audience. */
const EVERYTHING_SET = {
  image: { repository: 'registry.example.com:5000/acme/spiffe-sidecar', tag: '0.1.0-rc.1', pullPolicy: 'Always' },
  imagePullSecrets: [{ name: 'regcred' }],
  replicas: 3,
  podDisruptionBudget: { enabled: true, minAvailable: 2 },
  nodeSelector: { 'kubernetes.io/os': 'linux' },
  tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'infra', effect: 'NoSchedule' }],
  affinity: {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 100,
          podAffinityTerm: {
            topologyKey: 'kubernetes.io/hostname',
            labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'spiffe-sidecar-injector' } },
          },
        },
      ],
    },
  },
  logLevel: 'debug',
  webhook: { failurePolicy: 'Ignore', timeoutSeconds: 5, excludeNamespaces: ['monitoring', NS, 'kube-system'] },
  sidecar: {
    image: { repository: 'ghcr.io/acme/sidecar', tag: '2.0.0', pullPolicy: 'Never' },
    defaultMode: 'jwt',
    port: 9443,
    adminPort: 9444,
    resources: { cpuRequest: '100m', memoryRequest: '96Mi', memoryLimit: '512Mi' },
    jwt: { issuer: 'https://oidc.example.com/cluster-1', trustDomain: 'prod.example.com', tokenAudience: 'sidecar' },
  },
};

interface InjectorCase {
  name: string;
  args: string[];
  expected: string[];
  certificate: 'job' | 'cert-manager';
}

const injector = new Map<string, Render>();

const injectorCases: InjectorCase[] = [
  {
    name: 'values.yaml, no cert-manager in the cluster (certificate from the Job)',
    args: [],
    expected: [...INJECTOR_CORE, `PodDisruptionBudget/${NAME}`, ...CERTGEN],
    certificate: 'job',
  },
  {
    name: 'values.yaml, cert-manager installed (--api-versions cert-manager.io/v1)',
    args: ['--api-versions', 'cert-manager.io/v1'],
    expected: [...INJECTOR_CORE, `PodDisruptionBudget/${NAME}`, ...CERT_MANAGER_OBJECTS],
    certificate: 'cert-manager',
  },
  {
    name: 'certificate.source=cert-manager, asked for explicitly',
    args: ['--set', 'certificate.source=cert-manager'],
    expected: [...INJECTOR_CORE, `PodDisruptionBudget/${NAME}`, ...CERT_MANAGER_OBJECTS],
    certificate: 'cert-manager',
  },
  {
    name: 'certificate.source=job although cert-manager is installed',
    args: ['--set', 'certificate.source=job', '--api-versions', 'cert-manager.io/v1'],
    expected: [...INJECTOR_CORE, `PodDisruptionBudget/${NAME}`, ...CERTGEN],
    certificate: 'job',
  },
  {
    name: 'one replica (no PodDisruptionBudget: it would block every drain)',
    args: ['--set', 'replicas=1'],
    expected: [...INJECTOR_CORE, ...CERTGEN],
    certificate: 'job',
  },
  {
    name: 'every optional value set (a values file)',
    args: ['-f', 'EVERYTHING'],
    expected: [...INJECTOR_CORE, `PodDisruptionBudget/${NAME}`, ...CERTGEN],
    certificate: 'job',
  },
];

beforeAll(async () => {
  const values = await tempDir('spiffe-sidecar-helm-values-');
  try {
    writeFileSync(join(values.path, 'everything.yaml'), toYaml(EVERYTHING_SET));
    // One at a time: each helm run is a process of its own, and the machine has two cores.
    for (const c of injectorCases) {
      const args = c.args.map((a) => (a === 'EVERYTHING' ? join(values.path, 'everything.yaml') : a));
      injector.set(c.name, await render(RELEASE, CHART, NS, args));
    }
  } finally {
    await values.remove();
  }
}, 120_000);

describe('helm template renders the injector chart', () => {
  it.each(injectorCases)('$name: the objects expected, every one valid, in the release namespace', async (c) => {
    const r = injector.get(c.name)!;
    expect(kinds(r)).toEqual([...c.expected].sort());
    await validateAll(r.objects);
    expectInNamespace(r.objects, NS);
    for (const o of r.objects) {
      expect(o.metadata.labels, `${o.kind}/${o.metadata.name}`).toMatchObject({
        'app.kubernetes.io/managed-by': 'Helm',
        'app.kubernetes.io/instance': RELEASE,
        'helm.sh/chart': 'spiffe-sidecar-0.1.0',
      });
    }
  });

  it.each(injectorCases)('$name: every reference between the objects resolves', (c) => {
    const { objects } = injector.get(c.name)!;
    const deployment = find(objects, 'Deployment', NAME);
    const pod = deployment.spec.template;
    const container = pod.spec.containers[0];
    // The ServiceAccount, the selectors of the Deployment, the Service and the PodDisruptionBudget.
    find(objects, 'ServiceAccount', pod.spec.serviceAccountName);
    expectSelectorMatches(deployment.spec.selector.matchLabels, pod.metadata.labels, 'Deployment selector');
    const service = find(objects, 'Service', NAME);
    expectSelectorMatches(service.spec.selector, pod.metadata.labels, 'Service selector');
    const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget');
    if (pdb) expectSelectorMatches(pdb.spec.selector.matchLabels, pod.metadata.labels, 'PDB selector');
    // The Service's target port and the probes' port are the container's named port.
    const portNames = container.ports.map((p: Obj) => p.name);
    expect(portNames).toContain(service.spec.ports[0].targetPort);
    expect(portNames).toContain(container.readinessProbe.httpGet.port);
    expect(portNames).toContain(container.livenessProbe.httpGet.port);
    // Both webhooks call that Service, on its port.
    const mwc = find(objects, 'MutatingWebhookConfiguration', NAME);
    expect(mwc.webhooks).toHaveLength(2);
    for (const webhook of mwc.webhooks) {
      expect(webhook.clientConfig.service).toMatchObject({ name: service.metadata.name, namespace: NS });
      expect(service.spec.ports.map((p: Obj) => p.port)).toContain(webhook.clientConfig.service.port);
      const excluded = webhook.namespaceSelector.matchExpressions.find(
        (e: Obj) => e.key === 'kubernetes.io/metadata.name',
      );
      // The injector never needs itself to start: kube-system and its own namespace are never called, once.
      expect(excluded.values).toEqual(expect.arrayContaining(['kube-system', NS]));
      expect(new Set(excluded.values).size).toBe(excluded.values.length);
    }
    // The serving certificate: the Secret the Deployment mounts is the one cert-manager or the Job writes, with
    // the keys that one writes, for the name the API server dials.
    const secretVolume = pod.spec.volumes.find((v: Obj) => v.secret);
    const secretName = secretVolume.secret.secretName;
    const keys = secretVolume.secret.items.map((i: Obj) => i.key);
    const dialed = `${service.metadata.name}.${NS}.svc`;
    const mount = container.volumeMounts.find((m: Obj) => m.name === secretVolume.name);
    expect(container.args).toContain(`--tls-cert-file=${mount.mountPath}/tls.crt`);
    expect(container.args).toContain(`--tls-key-file=${mount.mountPath}/tls.key`);
    if (c.certificate === 'cert-manager') {
      const certificate = find(objects, 'Certificate', NAME);
      expect(certificate.spec.secretName).toBe(secretName);
      expect(certificate.spec.dnsNames).toContain(dialed);
      // Issued by a CA of the chart's own, which the API server trusts: a renewal of the serving certificate leaves
      // the trust anchor as it was (issued by a self-signed Issuer, each renewal would replace it).
      const issuer = find(objects, 'Issuer', certificate.spec.issuerRef.name);
      const ca = find(objects, 'Certificate', `${NAME}-ca`);
      expect(ca.spec.isCA).toBe(true);
      expect(issuer.spec.ca.secretName).toBe(ca.spec.secretName);
      expect(find(objects, 'Issuer', ca.spec.issuerRef.name).spec.selfSigned).toEqual({});
      expect(keys).toEqual(['tls.crt', 'tls.key']);
      expect(mwc.metadata.annotations['cert-manager.io/inject-ca-from']).toBe(`${NS}/${ca.metadata.name}`);
    } else {
      const pre = find(objects, 'Job', `${NAME}-certgen-pre`);
      const post = find(objects, 'Job', `${NAME}-certgen-post`);
      const preArgs: string[] = pre.spec.template.spec.containers[0].args;
      const postArgs: string[] = post.spec.template.spec.containers[0].args;
      expect(preArgs[0]).toBe('create');
      expect(preArgs).toContain(`--secret-name=${secretName}`);
      expect(
        preArgs
          .find((a) => a.startsWith('--host='))
          ?.split('=')[1]
          .split(','),
      ).toContain(dialed);
      expect(postArgs[0]).toBe('patch');
      expect(postArgs).toContain(`--secret-name=${secretName}`);
      expect(postArgs).toContain(`--webhook-name=${mwc.metadata.name}`);
      expect(keys).toEqual(['cert', 'key']);
      expect(mwc.metadata.annotations?.['cert-manager.io/inject-ca-from']).toBeUndefined();
      // Hooks: the Secret exists before the injector's pods start, the CA is patched in after the webhook exists.
      expect(pre.metadata.annotations['helm.sh/hook']).toBe('pre-install,pre-upgrade');
      expect(post.metadata.annotations['helm.sh/hook']).toBe('post-install,post-upgrade');
      // The Jobs' RBAC: their ServiceAccount, bound to exactly that Secret's namespace and that webhook.
      for (const job of [pre, post]) find(objects, 'ServiceAccount', job.spec.template.spec.serviceAccountName);
      for (const binding of objects.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding')) {
        find(objects, binding.roleRef.kind, binding.roleRef.name);
        for (const s of binding.subjects) expect(find(objects, 'ServiceAccount', s.name).metadata.namespace).toBe(NS);
      }
      const clusterRole = find(objects, 'ClusterRole', `${NAME}-certgen`);
      expect(clusterRole.rules[0].resourceNames).toEqual([mwc.metadata.name]);
      // It reads the one Secret it writes, no other of the namespace (create cannot be limited by name).
      const role = find(objects, 'Role', `${NAME}-certgen`);
      expect(role.rules).toEqual([
        { apiGroups: [''], resources: ['secrets'], resourceNames: [secretName], verbs: ['get'] },
        { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      ]);
      // Every hook object is created before the Job that needs it (a lower weight) and removed once it ran.
      for (const o of objects.filter((x) => x.metadata.annotations?.['helm.sh/hook'])) {
        expect(o.metadata.annotations['helm.sh/hook-delete-policy']).toContain('hook-succeeded');
        if (o.kind !== 'Job') expect(Number(o.metadata.annotations['helm.sh/hook-weight'])).toBeLessThan(0);
      }
    }
  });

  it.each(injectorCases)("$name: the injector's rendered flags parse, into what the values asked for", (c) => {
    const { objects } = injector.get(c.name)!;
    const container = find(objects, 'Deployment', NAME).spec.template.spec.containers[0];
    const command = parseCommandLine(container.args);
    expect(command.command).toBe('inject-webhook');
    const config = parseWebhookOptions((command as { options: Record<string, string> }).options);
    const set = c.args.includes('-f');
    expect(container.image).toBe(
      set ? 'registry.example.com:5000/acme/spiffe-sidecar:0.1.0-rc.1' : 'spiffe-sidecar:0.1.0',
    );
    expect(container.imagePullPolicy).toBe(set ? 'Always' : 'IfNotPresent');
    expect(config.listen.port).toBe(container.ports[0].containerPort);
    expect(config.sidecar).toEqual(
      set
        ? {
            image: 'ghcr.io/acme/sidecar:2.0.0',
            imagePullPolicy: 'Never',
            defaultMode: 'jwt',
            port: 9443,
            adminPort: 9444,
            k8sIssuer: 'https://oidc.example.com/cluster-1',
            k8sTrustDomain: 'prod.example.com',
            k8sTokenAudience: 'sidecar',
            resources: { cpuRequest: '100m', memoryRequest: '96Mi', memoryLimit: '512Mi' },
          }
        : {
            // Empty sidecar.image: the injector's own image, tag the chart's appVersion.
            image: 'spiffe-sidecar:0.1.0',
            imagePullPolicy: 'IfNotPresent',
            defaultMode: 'spire',
            port: 8443,
            adminPort: 15020,
            k8sIssuer: 'https://kubernetes.default.svc.cluster.local',
            k8sTrustDomain: 'cluster.local',
            // Empty tokenAudience: no flag, and the injector defaults it to the issuer.
            k8sTokenAudience: 'https://kubernetes.default.svc.cluster.local',
            resources: { cpuRequest: '50m', memoryRequest: '64Mi', memoryLimit: '256Mi' },
          },
    );
    expect(config.logLevel).toBe(set ? 'debug' : 'info');
    const deployment = find(objects, 'Deployment', NAME);
    expect(deployment.spec.replicas).toBe(set ? 3 : c.args.includes('replicas=1') ? 1 : 2);
    if (set) {
      const spec = deployment.spec.template.spec;
      expect(spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
      expect(spec.nodeSelector).toEqual(EVERYTHING_SET.nodeSelector);
      expect(spec.tolerations).toEqual(EVERYTHING_SET.tolerations);
      expect(spec.affinity).toEqual(EVERYTHING_SET.affinity);
      expect(find(objects, 'PodDisruptionBudget', NAME).spec.minAvailable).toBe(2);
      const mwc = find(objects, 'MutatingWebhookConfiguration', NAME);
      for (const webhook of mwc.webhooks) {
        expect(webhook).toMatchObject({ failurePolicy: 'Ignore', timeoutSeconds: 5 });
        const excluded = webhook.namespaceSelector.matchExpressions[0].values;
        expect([...excluded].sort()).toEqual(['kube-system', 'monitoring', NS].sort());
      }
    }
  });
});

/** The demo chart in namespace demo, with each values file the repository ships (values.yaml alone: the defaults). */
const DEMO_FILES = ['values.yaml', 'values-spire.yaml', 'values-file.yaml', 'values-jwt.yaml'] as const;
const demo = new Map<string, Render>();

describe('helm template renders the demo chart', () => {
  beforeAll(async () => {
    for (const file of DEMO_FILES) {
      demo.set(file, await render('demo', DEMO, 'demo', file === 'values.yaml' ? [] : ['-f', join(DEMO, file)]));
    }
  }, 120_000);

  it.each(DEMO_FILES)('%s: echo and caller, every object valid, in the release namespace', async (file) => {
    const r = demo.get(file)!;
    expect(kinds(r)).toEqual([
      'Deployment/caller',
      'Deployment/echo',
      'Service/echo',
      'ServiceAccount/caller',
      'ServiceAccount/echo',
    ]);
    await validateAll(r.objects);
    expectInNamespace(r.objects, 'demo');
  });

  it.each(DEMO_FILES)('%s: the pods ask the injector for what the mode needs, and the Service reaches echo', (file) => {
    const { objects } = demo.get(file)!;
    const mode = file === 'values.yaml' ? 'spire' : /values-(\w+)\.yaml/.exec(file)![1];
    const echo = find(objects, 'Deployment', 'echo');
    const caller = find(objects, 'Deployment', 'caller');
    const service = find(objects, 'Service', 'echo');
    const known = Object.values(ANNOTATIONS) as string[];
    for (const d of [echo, caller]) {
      const pod = d.spec.template;
      expectSelectorMatches(d.spec.selector.matchLabels, pod.metadata.labels, `${d.metadata.name} selector`);
      find(objects, 'ServiceAccount', pod.spec.serviceAccountName);
      for (const name of Object.keys(pod.metadata.annotations ?? {})) expect(known, name).toContain(name);
    }
    expectSelectorMatches(service.spec.selector, echo.spec.template.metadata.labels, 'Service selector');
    const echoAnnotations = echo.spec.template.metadata.annotations;
    expect(echoAnnotations[ANNOTATIONS.inject]).toBe('true');
    expect(echoAnnotations[ANNOTATIONS.mode]).toBe(mode);
    const trustDomain = mode === 'jwt' ? 'cluster.local' : 'example.org';
    expect(echoAnnotations[ANNOTATIONS.allow]).toBe(`spiffe://${trustDomain}/ns/demo/sa/caller`);
    expect(service.spec.ports[0]).toMatchObject({ port: 8443, targetPort: 8443 });
    expect(service.spec.ports[0].name).toBe(mode === 'jwt' ? 'http' : 'https');
    const callerAnnotations = caller.spec.template.metadata.annotations;
    if (mode === 'jwt') {
      // No sidecar for the caller: it sends its own projected token, audience echo, as echo expects.
      expect(callerAnnotations).toBeUndefined();
      expect(echoAnnotations[ANNOTATIONS.jwtAudience]).toBe('echo');
      const token = caller.spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken;
      expect(token.audience).toBe('echo');
    } else {
      // The caller's outbound route dials the Service's name and port, and expects echo's ID.
      expect(callerAnnotations[ANNOTATIONS.mode]).toBe(mode);
      expect(callerAnnotations[ANNOTATIONS.outbound]).toBe(
        `127.0.0.1:15001=https://${service.metadata.name}.demo.svc:${service.spec.ports[0].port},id=spiffe://example.org/ns/demo/sa/echo`,
      );
      if (mode === 'file') {
        expect(echoAnnotations[ANNOTATIONS.secret]).toBe('echo-svid');
        expect(callerAnnotations[ANNOTATIONS.secret]).toBe('caller-svid');
      } else {
        expect(echoAnnotations[ANNOTATIONS.secret]).toBeUndefined();
      }
    }
  });
});

describe("the README's helm commands", () => {
  /** `helm install RELEASE CHART --namespace NS [--create-namespace] [-f FILE]`, as the README writes them. */
  const installs = [
    ...readme.matchAll(/^helm install (\S+) (\S+) --namespace (\S+)(?: --create-namespace)?(?: -f (\S+))?$/gm),
  ].map(([line, release, chart, namespace, values]) => ({ line, release, chart, namespace, values }));

  it('install the injector once and the demo in each mode, with files that exist', () => {
    expect(installs.map((i) => `${i.chart} ${i.values ?? ''}`.trim())).toEqual([
      'helm/spiffe-sidecar',
      'helm/examples/demo helm/examples/demo/values-spire.yaml',
      'helm/examples/demo helm/examples/demo/values-file.yaml',
      'helm/examples/demo helm/examples/demo/values-jwt.yaml',
    ]);
  });

  it('render as written, and the Deployments the README then waits for are in them', async () => {
    const rendered: { namespace: string; objects: Obj[] }[] = [];
    for (const i of installs) {
      const r = await render(i.release, join(ROOT, i.chart), i.namespace, i.values ? ['-f', join(ROOT, i.values)] : []);
      await validateAll(r.objects);
      rendered.push({ namespace: i.namespace, objects: r.objects });
    }
    // `kubectl -n NS rollout status deployment/NAME` for what the charts install (spire/ is kustomize's).
    const waits = [...readme.matchAll(/^kubectl -n (\S+) rollout status deployment\/(\S+)$/gm)].filter(
      ([, ns]) => ns !== 'spire-system',
    );
    expect(waits.length).toBe(3);
    for (const [line, ns, name] of waits) {
      const found = rendered.some(
        (r) => r.namespace === ns && r.objects.some((o) => o.kind === 'Deployment' && o.metadata.name === name),
      );
      expect(found, line).toBe(true);
    }
  }, 60_000);
});
