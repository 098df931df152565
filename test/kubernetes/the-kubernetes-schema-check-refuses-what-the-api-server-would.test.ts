// The other Kubernetes tests lean on validateKubernetesObject; this proves it is not a rubber stamp: it
// refuses wrong types and missing required fields (the models' schema) and, at any depth, fields the
// API does not have (a typo the API server would prune or reject), and accepts the real thing.
import { describe, expect, it } from 'vitest';
import { isBuiltInKind, validateKubernetesObject } from '../helpers/kubernetes-schema.js';

const daemonSet = (container: Record<string, unknown>, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'apps/v1',
  kind: 'DaemonSet',
  metadata: { name: 'agent', namespace: 'spire-system', labels: { app: 'agent' } },
  spec: {
    selector: { matchLabels: { app: 'agent' } },
    template: {
      metadata: { labels: { app: 'agent' } },
      spec: { containers: [{ name: 'agent', image: 'ghcr.io/spiffe/spire-agent:1.11.2', ...container }], ...spec },
    },
  },
});

describe('the Kubernetes schema check refuses what the API server would', () => {
  it('accepts a valid object with maps, quantities, int-or-string ports and projected volumes', async () => {
    await validateKubernetesObject(
      daemonSet(
        {
          resources: { requests: { cpu: '50m', memory: '64Mi' } },
          livenessProbe: { httpGet: { path: '/live', port: 'healthz' } },
          volumeMounts: [{ name: 'token', mountPath: '/t', mountPropagation: 'None' }],
        },
        {
          volumes: [{ name: 'token', projected: { sources: [{ serviceAccountToken: { audience: 'a', path: 't' } }] } }],
        },
      ),
    );
  });

  it.each([
    [
      'a misspelt field deep in a container',
      { volumeMounts: [{ name: 'v', mountPath: '/v', mountPropogation: 'B' }] },
      /mountPropogation/,
    ],
    ['a misspelt field in a nested object', { securityContext: { capabilities: { dorp: ['ALL'] } } }, /dorp/],
    ['a wrong type', { ports: [{ containerPort: '8080' }] }, /containerPort must be integer/],
    [
      'a missing required field',
      { livenessProbe: { httpGet: { path: '/live' } } },
      /httpGet must have required property port/,
    ],
  ])('refuses %s', async (_, container, message) => {
    await expect(validateKubernetesObject(daemonSet(container))).rejects.toThrow(message);
  });

  it('refuses an unknown field at the top and in inline types (volumeClaimTemplates)', async () => {
    await expect(validateKubernetesObject({ ...daemonSet({}), status2: {} })).rejects.toThrow(
      /unknown field "status2"/,
    );
    await expect(
      validateKubernetesObject({
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: 'server' },
        spec: { serviceName: 'server', selector: {}, template: {}, volumeClaimTemplatez: [] },
      }),
    ).rejects.toThrow(/volumeClaimTemplatez/);
  });

  it('knows built-in kinds from custom resources', () => {
    expect(isBuiltInKind('storage.k8s.io/v1', 'CSIDriver')).toBe(true);
    expect(isBuiltInKind('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration')).toBe(true);
    expect(isBuiltInKind('spire.spiffe.io/v1alpha1', 'ClusterSPIFFEID')).toBe(false);
  });
});
