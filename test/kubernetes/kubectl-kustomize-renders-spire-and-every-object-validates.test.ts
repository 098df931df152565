// `kubectl kustomize spire/` renders, and what it renders would be accepted and would work together:
// every built-in object passes the Kubernetes schema with no unknown field, every custom resource passes
// its CRD's schema, every reference (service account, ConfigMap, volume, port, role, Service selector)
// resolves, and SPIRE's own configuration agrees with itself and with the webhook (trust domain,
// cluster name, k8s_psat, the agent socket the CSI driver hands to the sidecar, the ID convention).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { NAMESPACE_LABEL } from '../../src/webhook/annotations.js';
import { SPIFFE_CSI_DRIVER, WORKLOAD_API_SOCKET } from '../../src/webhook/sidecar-container.js';
import { isBuiltInKind, validateKubernetesObject } from '../helpers/kubernetes-schema.js';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- rendered YAML is untyped data
type Obj = Record<string, any>;
let objects: Obj[];

const CLUSTER_SCOPED = ['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding', 'CSIDriver'];

function find(kind: string, name: string): Obj {
  const found = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in the rendered manifests`);
  return found;
}

function workloads(): Obj[] {
  return objects.filter((o) => ['StatefulSet', 'DaemonSet', 'Deployment'].includes(o.kind));
}

/** `key = "value"` in SPIRE's HCL configuration. */
function hcl(text: string, key: string): string {
  const m = new RegExp(`^\\s*${key}\\s*=\\s*"([^"]*)"`, 'm').exec(text);
  if (!m) throw new Error(`no ${key} in:\n${text}`);
  return m[1];
}

/** A CRD's schema as a strict JSON Schema: where the API server would prune an unknown field, refuse it. */
function strictSchema(schema: Obj): Obj {
  if (Array.isArray(schema)) return schema.map(strictSchema);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Obj = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key.startsWith('x-kubernetes-') || key === 'description') continue;
    out[key] = strictSchema(value);
  }
  if (schema.type === 'object' && schema.properties && !schema['x-kubernetes-preserve-unknown-fields'])
    out.additionalProperties ??= false;
  return out;
}

beforeAll(async () => {
  let stdout: string;
  try {
    ({ stdout } = await run('kubectl', ['kustomize', 'spire/'], { cwd: ROOT }));
  } catch (err) {
    throw new Error(
      `kubectl kustomize spire/ failed (${(err as Error).message}); install kubectl: .ci/run installs Debian's kubernetes-client`,
    );
  }
  objects = parseAllDocuments(stdout)
    .map((d) => d.toJS() as Obj)
    .filter(Boolean);
});

describe('kubectl kustomize renders spire/ and every object validates', () => {
  it('renders the SPIRE server, agent, CSI driver and controller manager', () => {
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Namespace/spire-system',
        'StatefulSet/spire-server',
        'DaemonSet/spire-agent',
        'DaemonSet/spiffe-csi-driver',
        'CSIDriver/csi.spiffe.io',
        'CustomResourceDefinition/clusterspiffeids.spire.spiffe.io',
      ]),
    );
    expect(find('StatefulSet', 'spire-server').spec.template.spec.containers.map((c: Obj) => c.name)).toEqual([
      'spire-server',
      'spire-controller-manager',
    ]);
  });

  it('every built-in object passes the Kubernetes schema, with no unknown field', async () => {
    const builtIn = objects.filter((o) => isBuiltInKind(o.apiVersion, o.kind));
    expect(builtIn.length).toBe(objects.length - objects.filter((o) => o.kind === 'ClusterSPIFFEID').length);
    for (const object of builtIn) await validateKubernetesObject(object as { apiVersion: string; kind: string });
  });

  it('every custom resource passes the schema of its CRD, strictly', () => {
    const custom = objects.filter((o) => !isBuiltInKind(o.apiVersion, o.kind));
    expect(custom.map((o) => o.kind)).toEqual(['ClusterSPIFFEID', 'ClusterSPIFFEID']);
    const ajv = new Ajv({ allErrors: true, strict: false });
    for (const resource of custom) {
      const [group, version] = resource.apiVersion.split('/');
      const crd = objects.find(
        (o) => o.kind === 'CustomResourceDefinition' && o.spec.group === group && o.spec.names.kind === resource.kind,
      );
      expect(crd, `a CRD for ${resource.apiVersion} ${resource.kind}`).toBeDefined();
      expect(crd?.spec.scope).toBe('Cluster');
      const served = crd?.spec.versions.find((v: Obj) => v.name === version && v.served);
      const validate = ajv.compile(strictSchema(served.schema.openAPIV3Schema));
      expect(validate(resource), `${resource.metadata.name}: ${ajv.errorsText(validate.errors)}`).toBe(true);
      // The strict schema does refuse a misspelt field (the API server would silently drop it).
      expect(validate({ ...resource, spec: { ...resource.spec, spiffeIdTemplate: 'x' } })).toBe(false);
    }
  });

  it('namespaced objects live in spire-system, cluster-scoped ones have no namespace', () => {
    for (const o of objects) {
      const clusterScoped = CLUSTER_SCOPED.includes(o.kind) || o.kind === 'ClusterSPIFFEID';
      expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(clusterScoped ? undefined : 'spire-system');
    }
  });

  it('every image is pinned to a tag', () => {
    const images = workloads().flatMap((w) => w.spec.template.spec.containers.map((c: Obj) => c.image as string));
    expect(images).toHaveLength(5);
    for (const image of images) expect(image).toMatch(/^[a-z0-9./-]+:v?\d+\.\d+\.\d+$/);
  });

  it('every reference resolves: service accounts, ConfigMaps, volumes, ports, roles, Service selectors', () => {
    for (const w of workloads()) {
      const spec = w.spec.template.spec;
      find('ServiceAccount', spec.serviceAccountName);
      expect(w.spec.selector.matchLabels).toEqual(
        expect.objectContaining(Object.fromEntries(Object.entries(w.spec.selector.matchLabels))),
      );
      for (const [k, v] of Object.entries(w.spec.selector.matchLabels))
        expect(w.spec.template.metadata.labels[k]).toBe(v);
      const volumes = new Set([
        ...(spec.volumes ?? []).map((v: Obj) => v.name),
        ...(w.spec.volumeClaimTemplates ?? []).map((v: Obj) => v.metadata.name),
      ]);
      for (const v of spec.volumes ?? []) if (v.configMap) find('ConfigMap', v.configMap.name);
      for (const c of spec.containers) {
        const ports = new Set((c.ports ?? []).map((p: Obj) => p.name));
        for (const m of c.volumeMounts ?? [])
          expect(volumes, `${w.metadata.name}/${c.name} mounts ${m.name}`).toContain(m.name);
        for (const probe of [c.livenessProbe, c.readinessProbe].filter(Boolean)) {
          if (typeof probe.httpGet.port === 'string') expect(ports).toContain(probe.httpGet.port);
        }
      }
    }
    for (const binding of objects.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding')) {
      find(binding.roleRef.kind, binding.roleRef.name);
      for (const s of binding.subjects) find('ServiceAccount', s.name);
    }
    const service = find('Service', 'spire-server');
    const server = find('StatefulSet', 'spire-server');
    for (const [k, v] of Object.entries(service.spec.selector)) expect(server.spec.template.metadata.labels[k]).toBe(v);
    const serverPorts = server.spec.template.spec.containers[0].ports.map((p: Obj) => p.name);
    for (const p of service.spec.ports) expect(serverPorts).toContain(p.targetPort);
  });

  it("SPIRE's configuration agrees with itself: trust domain, cluster, k8s_psat, sockets, the agent's token", () => {
    const serverConf = find('ConfigMap', 'spire-server').data['server.conf'];
    const agentConf = find('ConfigMap', 'spire-agent').data['agent.conf'];
    const cm = parseYaml(find('ConfigMap', 'spire-controller-manager').data['controller-manager-config.yaml']);

    const trustDomain = hcl(serverConf, 'trust_domain');
    expect(hcl(agentConf, 'trust_domain')).toBe(trustDomain);
    expect(cm.trustDomain).toBe(trustDomain);

    // k8s_psat on both sides, for the same cluster, allowing exactly the agent's service account.
    expect(serverConf).toMatch(/NodeAttestor "k8s_psat"/);
    expect(agentConf).toMatch(/NodeAttestor "k8s_psat"/);
    expect(agentConf).toMatch(/WorkloadAttestor "k8s"/);
    const cluster = hcl(agentConf, 'cluster');
    expect(serverConf).toContain(`"${cluster}" = {`);
    expect(cm.clusterName).toBe(cluster);
    const agent = find('DaemonSet', 'spire-agent');
    expect(serverConf).toContain(
      `service_account_allow_list = ["spire-system:${agent.spec.template.spec.serviceAccountName}"]`,
    );
    expect(agent.spec.template.spec.hostPID).toBe(true);

    // The agent reaches the server through its Service.
    expect(hcl(agentConf, 'server_address')).toBe('spire-server.spire-system.svc');
    expect(find('Service', 'spire-server').spec.ports[0].port).toBe(Number(hcl(serverConf, 'bind_port')));

    // The agent's token: audience spire-server, where k8s_psat reads it.
    const agentSpec = agent.spec.template.spec;
    const tokenVolume = agentSpec.volumes.find((v: Obj) => v.projected);
    const token = tokenVolume.projected.sources[0].serviceAccountToken;
    expect(token.audience).toBe('spire-server');
    const tokenMount = agentSpec.containers[0].volumeMounts.find((m: Obj) => m.name === tokenVolume.name);
    expect(hcl(agentConf, 'token_path')).toBe(`${tokenMount.mountPath}/${token.path}`);

    // The controller manager talks to the server on the socket directory they share.
    const serverSocket = hcl(serverConf, 'socket_path');
    expect(cm.spireServerSocketPath).toBe(serverSocket);
    const [serverContainer, cmContainer] = find('StatefulSet', 'spire-server').spec.template.spec.containers;
    const socketDir = serverSocket.slice(0, serverSocket.lastIndexOf('/'));
    const shared = (c: Obj) => c.volumeMounts.find((m: Obj) => m.mountPath === socketDir)?.name;
    expect(shared(serverContainer)).toBeDefined();
    expect(shared(cmContainer)).toBe(shared(serverContainer));
    expect(cmContainer.env).toContainEqual({ name: 'ENABLE_WEBHOOKS', value: 'false' });
    const knownKeys = [
      'apiVersion',
      'kind',
      'metrics',
      'health',
      'leaderElection',
      'clusterName',
      'clusterDomain',
      'trustDomain',
      'ignoreNamespaces',
      'validatingWebhookConfigurationName',
      'gcInterval',
      'spireServerSocketPath',
      'className',
      'watchClassless',
      'parentIDTemplate',
      'reconcile',
      'entryIDPrefix',
      'syncPeriod',
      'webhook',
      'controller',
    ];
    for (const key of Object.keys(cm)) expect(knownKeys).toContain(key);
    expect(cm.ignoreNamespaces).toEqual(expect.arrayContaining(['kube-system', 'spire-system']));
  });

  it('the CSI driver hands pods the agent socket exactly where the injected sidecar looks for it', () => {
    const agentConf = find('ConfigMap', 'spire-agent').data['agent.conf'];
    const agentSocket = hcl(agentConf, 'socket_path');
    const socketName = agentSocket.slice(agentSocket.lastIndexOf('/') + 1);
    expect(WORKLOAD_API_SOCKET.endsWith(`/${socketName}`)).toBe(true);

    const hostDir = (daemonSet: Obj, mountPath: string) => {
      const spec = daemonSet.spec.template.spec;
      const mount = spec.containers[0].volumeMounts.find((m: Obj) => m.mountPath === mountPath);
      return spec.volumes.find((v: Obj) => v.name === mount.name).hostPath.path;
    };
    const agentDir = agentSocket.slice(0, agentSocket.lastIndexOf('/'));
    const csi = find('DaemonSet', 'spiffe-csi-driver');
    const args: string[] = csi.spec.template.spec.containers[0].args;
    const socketDirArg = args[args.indexOf('-workload-api-socket-dir') + 1];
    expect(hostDir(csi, socketDirArg)).toBe(hostDir(find('DaemonSet', 'spire-agent'), agentDir));

    expect(find('CSIDriver', SPIFFE_CSI_DRIVER).spec.volumeLifecycleModes).toEqual(['Ephemeral']);
    expect(args[args.indexOf('-plugin-name') + 1]).toBe(SPIFFE_CSI_DRIVER);
    const registrar = csi.spec.template.spec.containers[1].args;
    expect(registrar[registrar.indexOf('-kubelet-registration-path') + 1]).toBe(
      `/var/lib/kubelet/plugins/${SPIFFE_CSI_DRIVER}/csi.sock`,
    );
  });

  it('ClusterSPIFFEIDs give spiffe://<td>/ns/<ns>/sa/<sa>, for opted-in namespaces and labelled pods', () => {
    const ids = objects.filter((o) => o.kind === 'ClusterSPIFFEID');
    const trustDomain = hcl(find('ConfigMap', 'spire-server').data['server.conf'], 'trust_domain');
    for (const id of ids) {
      const rendered = (id.spec.spiffeIDTemplate as string)
        .replace('{{ .TrustDomain }}', trustDomain)
        .replace('{{ .PodMeta.Namespace }}', 'shop')
        .replace('{{ .PodSpec.ServiceAccountName }}', 'orders');
      expect(parseSpiffeId(rendered).toString()).toBe(`spiffe://${trustDomain}/ns/shop/sa/orders`);
    }
    const byNamespace = ids.find((i) => i.spec.namespaceSelector);
    expect(byNamespace?.spec.namespaceSelector.matchLabels).toEqual({ [NAMESPACE_LABEL]: 'enabled' });
    expect(ids.find((i) => i.spec.podSelector)?.spec.podSelector.matchLabels).toEqual({
      'spiffe.io/spiffe-id': 'true',
    });
  });
});
