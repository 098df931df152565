// The decision for one pod: leave it alone (with the reason), deny it (a bad annotation: the message
// says which and why), or patch it (the sidecar, its volumes, and a status annotation). A pure function
// over the pod's JSON: nothing here touches the network.
import { isSidecarError } from '../errors.js';
import { ANNOTATIONS, injectionRequested, type PodSidecarSettings, parsePodSettings } from './annotations.js';
import { type AddOperation, addToArray, addToObject } from './json-patch.js';
import type { Pod } from './kubernetes-types.js';
import type { SidecarTemplate } from './options.js';
import { checkSidecarConfig } from './sidecar-config-check.js';
import { SIDECAR_CONTAINER_NAME, sidecarContainer, sidecarVolumes } from './sidecar-container.js';

/** Namespaces that never get a sidecar, whatever their pods or labels say. */
export const PROTECTED_NAMESPACES: readonly string[] = ['kube-system'];

/** The API server's usual audiences (beyond --k8s-issuer and --k8s-token-audience): never a route's token. */
const API_SERVER_AUDIENCES = ['https://kubernetes.default.svc', 'https://kubernetes.default.svc.cluster.local'];

export type SkipReason =
  'not_requested' | 'opted_out' | 'already_injected' | 'host_network' | 'windows_pod' | 'protected_namespace';

export type InjectDecision =
  | { kind: 'patch'; patch: AddOperation[]; settings: PodSidecarSettings; warning?: string }
  | { kind: 'skip'; reason: SkipReason; warning?: string }
  | { kind: 'deny'; message: string };

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function hasSidecar(pod: Pod): boolean {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  return all.some((c) => c?.name === SIDECAR_CONTAINER_NAME);
}

/** Every TCP port the pod's own containers declare (a UDP one, such as statsd's, is no conflict for a listener). */
function declaredPorts(pod: Pod): Set<number> {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  return new Set(
    all.flatMap((c) =>
      Array.isArray(c?.ports)
        ? c.ports.filter((p) => (p?.protocol ?? 'TCP') === 'TCP').map((p) => p?.containerPort)
        : [],
    ),
  );
}

export function decideInjection(
  pod: Pod,
  namespace: string,
  namespaceOptIn: boolean,
  template: SidecarTemplate,
): InjectDecision {
  const rawAnnotations = pod.metadata?.annotations;
  const annotations = isObject(rawAnnotations) ? rawAnnotations : {};
  try {
    const annotated = annotations[ANNOTATIONS.inject] === 'true';
    if (PROTECTED_NAMESPACES.includes(namespace)) {
      return annotated
        ? { kind: 'skip', reason: 'protected_namespace', warning: `spiffe-sidecar: not injected in ${namespace}` }
        : { kind: 'skip', reason: 'protected_namespace' };
    }
    if (!injectionRequested(annotations, namespaceOptIn)) {
      return { kind: 'skip', reason: namespaceOptIn ? 'opted_out' : 'not_requested' };
    }
    if (annotations[ANNOTATIONS.status] !== undefined) return { kind: 'skip', reason: 'already_injected' };
    if (hasSidecar(pod)) {
      // Not ours (no status annotation): the pod asked for a sidecar and will run without the one it asked for.
      return {
        kind: 'skip',
        reason: 'already_injected',
        warning: `spiffe-sidecar: not injected: the pod already has a container named ${SIDECAR_CONTAINER_NAME}`,
      };
    }
    if (pod.spec?.hostNetwork === true) {
      // The sidecar's ports would be the node's ports, and its callers every process on the node.
      return {
        kind: 'skip',
        reason: 'host_network',
        warning: 'spiffe-sidecar: not injected into a hostNetwork pod (its ports would be the node ports)',
      };
    }
    if (pod.spec?.os?.name === 'windows') {
      // The image and the security context the sidecar gets are Linux's: the API server would refuse the pod.
      return {
        kind: 'skip',
        reason: 'windows_pod',
        warning: 'spiffe-sidecar: not injected into a Windows pod (the sidecar runs on Linux nodes only)',
      };
    }
    if (!Array.isArray(pod.spec?.containers) || pod.spec.containers.length === 0) {
      return { kind: 'deny', message: 'spiffe-sidecar: the pod has no spec.containers to put a sidecar next to' };
    }
    const settings = parsePodSettings(annotations, { mode: template.defaultMode, port: template.port });
    const container = sidecarContainer(settings, template);
    const volumes = sidecarVolumes(settings, template).map((v) => v.volume);

    if (settings.appPort !== undefined && settings.port === template.adminPort) {
      return {
        kind: 'deny',
        message: `spiffe-sidecar: annotation ${ANNOTATIONS.port} ${settings.port} is the sidecar's admin port; pick another`,
      };
    }
    const taken = declaredPorts(pod);
    for (const port of container.ports ?? []) {
      if (taken.has(port.containerPort)) {
        return {
          kind: 'deny',
          message: `spiffe-sidecar: port ${port.containerPort} (${port.name}) is already used by a container of the pod; set annotation ${ANNOTATIONS.port} to another port`,
        };
      }
    }
    if (settings.appPort !== undefined && (container.ports ?? []).some((p) => p.containerPort === settings.appPort)) {
      return {
        kind: 'deny',
        message: `spiffe-sidecar: annotation ${ANNOTATIONS.appPort} ${settings.appPort} is a port of the sidecar itself; the app must listen on another port`,
      };
    }
    // Outbound routes listen on the pod's loopback: a port the sidecar, the app or another container has, or
    // another route's, would be admitted and then fail to bind (or take the app's port first).
    const routePorts = new Set<number>();
    for (const { route } of settings.outbound) {
      const listen = route.slice(0, route.indexOf('='));
      const p = Number(listen.slice(listen.lastIndexOf(':') + 1));
      const clash = routePorts.has(p)
        ? 'also the LISTEN port of another route'
        : p === settings.port || p === template.adminPort
          ? "the sidecar's own"
          : p === settings.appPort
            ? `the app's (annotation ${ANNOTATIONS.appPort})`
            : taken.has(p)
              ? 'declared by a container of the pod'
              : undefined;
      if (p !== 0 && clash !== undefined) {
        return {
          kind: 'deny',
          message: `spiffe-sidecar: annotation ${ANNOTATIONS.outbound}: LISTEN port ${p} is ${clash}; give each route a port of its own`,
        };
      }
      routePorts.add(p);
    }
    // A token for the API server's own audience would let the remote act as the pod's service account
    // against the API server: a route's token is for the remote alone.
    const apiAudiences = new Set([template.k8sIssuer, template.k8sTokenAudience, ...API_SERVER_AUDIENCES]);
    const apiRoute = settings.outbound.find((r) => r.tokenAudience !== undefined && apiAudiences.has(r.tokenAudience));
    if (apiRoute !== undefined) {
      return {
        kind: 'deny',
        message: `spiffe-sidecar: annotation ${ANNOTATIONS.outbound}: audience=${apiRoute.tokenAudience} is the API server's: the remote could act as this pod's service account against it; name the remote's own audience, e.g. audience=orders`,
      };
    }
    // The sidecar's volumes are its own: a container of the pod that names one in its volumeMounts would get
    // the SVID's key, the Workload API socket or the projected tokens.
    const ours = new Set(volumes.map((v) => v.name));
    const podContainers = [
      ...(pod.spec.containers ?? []),
      ...(pod.spec.initContainers ?? []),
      ...(pod.spec.ephemeralContainers ?? []),
    ];
    for (const c of podContainers) {
      const mount = (isObject(c) && Array.isArray(c.volumeMounts) ? c.volumeMounts : []).find(
        (m: unknown) => isObject(m) && typeof m.name === 'string' && ours.has(m.name),
      ) as { name: string } | undefined;
      if (mount)
        return {
          kind: 'deny',
          message: `spiffe-sidecar: container ${String((c as { name?: unknown }).name)} mounts ${mount.name}, a volume of the sidecar's own`,
        };
    }
    const volumeNames = new Set((pod.spec.volumes ?? []).map((v) => v?.name));
    for (const volume of volumes) {
      if (volumeNames.has(volume.name))
        return { kind: 'deny', message: `spiffe-sidecar: the pod already has a volume named ${volume.name}` };
    }
    checkSidecarConfig(container.args ?? [], container.env ?? []);

    const patch = [
      // First of the init containers: any init container after it can already use the identity.
      ...addToArray(pod.spec.initContainers, ['spec', 'initContainers'], [container], 'front'),
      ...addToArray(pod.spec.volumes, ['spec', 'volumes'], volumes, 'end'),
      ...(isObject(pod.metadata)
        ? addToObject(rawAnnotations, ['metadata', 'annotations'], ANNOTATIONS.status, 'injected')
        : addToObject(undefined, ['metadata'], 'annotations', { [ANNOTATIONS.status]: 'injected' })),
    ];
    // The sidecar runs as UID 65532 with no capabilities: below 1024 it binds only where the node lowered
    // net.ipv4.ip_unprivileged_port_start (containerd 2 and Docker do; containerd 1 does not). Pods that run on
    // such nodes must go on being admitted: a warning, not a denial.
    if (settings.port < 1024) {
      const warning = `spiffe-sidecar: port ${settings.port} is below 1024: the sidecar (a non-root user without capabilities) binds it only on nodes whose net.ipv4.ip_unprivileged_port_start allows it; elsewhere it will not start. Prefer 1024 or above, e.g. 8443`;
      return { kind: 'patch', patch, settings, warning };
    }
    return { kind: 'patch', patch, settings };
  } catch (err) {
    if (!isSidecarError(err)) throw err;
    return { kind: 'deny', message: `spiffe-sidecar: ${err.message}` };
  }
}
