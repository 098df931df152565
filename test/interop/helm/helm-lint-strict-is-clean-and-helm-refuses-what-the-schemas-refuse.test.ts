// `helm lint --strict` (warnings fail it) is clean for the injector chart and for the demo chart with each values
// file it ships; and helm's own values.schema.json check, which test/kubernetes/the-helm-charts-values-... only
// approximates (its own merge of values files, then ajv), agrees with it: the values that test accepts, helm
// renders; each value that test says the schema refuses, helm refuses too, naming the value. So does the chart's
// kubeVersion constraint.
import { describe, expect, it } from 'vitest';
import { CHART, DEMO, helm, KUBE_VERSION } from './helm.js';

/** helm lint's findings other than [INFO] (the only one today: "icon is recommended", which --strict allows). */
function findings(output: string): string[] {
  return output.split('\n').filter((line) => /^\[(WARNING|ERROR)\]/.test(line));
}

describe('helm lint --strict', () => {
  it('is clean for the injector chart, with and without cert-manager', async () => {
    for (const extra of [[], ['--set', 'certificate.source=cert-manager'], ['--set', 'replicas=1']]) {
      const result = await helm(['lint', '--strict', '--kube-version', KUBE_VERSION, CHART, ...extra]);
      expect(findings(result.stdout), result.stdout + result.stderr).toEqual([]);
      expect(result.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
      expect(result.code, result.stdout + result.stderr).toBe(0);
    }
  });

  it.each(['values.yaml', 'values-spire.yaml', 'values-file.yaml', 'values-jwt.yaml'])(
    'is clean for the demo chart with %s',
    async (file) => {
      const result = await helm(['lint', '--strict', '--kube-version', KUBE_VERSION, DEMO, '-f', `${DEMO}/${file}`]);
      expect(findings(result.stdout), result.stdout + result.stderr).toEqual([]);
      expect(result.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
      expect(result.code, result.stdout + result.stderr).toBe(0);
    },
  );

  it('fails, naming the problem, on a value the schema refuses (lint does check values)', async () => {
    const result = await helm(['lint', '--strict', CHART, '--set', 'webhook.failurePolicy=Sometimes']);
    expect(result.code).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/\[ERROR\] values\.yaml: - at '\/webhook\/failurePolicy'/);
  });
});

/**
 * Every value test/kubernetes/the-helm-charts-values-match-their-schemas-and-the-templates-match-the-code.test.ts
 * shows the schema refusing (its list, as helm --set or a values file writes it), and the field helm names.
 */
const REFUSED: [string, string[], RegExp][] = [
  [
    'a failure policy Kubernetes does not have',
    ['--set', 'webhook.failurePolicy=Sometimes'],
    /at '\/webhook\/failurePolicy'/,
  ],
  ['a timeout over the API server limit', ['--set', 'webhook.timeoutSeconds=60'], /at '\/webhook\/timeoutSeconds'/],
  ['an unknown identity mode', ['--set', 'sidecar.defaultMode=vault'], /at '\/sidecar\/defaultMode'/],
  ['port 0', ['--set', 'sidecar.port=0'], /at '\/sidecar\/port'/],
  ['a port as text', ['--set-string', 'sidecar.adminPort=15020'], /at '\/sidecar\/adminPort'/],
  [
    'a quantity with a space',
    ['--set', 'sidecar.resources.memoryLimit=1 Gi'],
    /at '\/sidecar\/resources\/memoryLimit'/,
  ],
  ['an image with a space', ['--set', 'image.repository=ghcr.io/x y'], /at '\/image\/repository'/],
  ['an http issuer', ['--set', 'sidecar.jwt.issuer=http://kubernetes.default.svc'], /at '\/sidecar\/jwt\/issuer'/],
  ['an unknown certificate source', ['--set', 'certificate.source=vault'], /at '\/certificate\/source'/],
  ['a misspelt key', ['--set', 'replica=3'], /additional properties 'replica' not allowed/],
  [
    'a bad namespace to exclude',
    ['--set', 'webhook.excludeNamespaces={Kube_System}'],
    /at '\/webhook\/excludeNamespaces\/0'/,
  ],
];

describe('helm refuses what the schemas refuse', () => {
  it.each(REFUSED)('the injector chart: %s', async (_, args, field) => {
    const result = await helm(['template', 't', CHART, '--kube-version', KUBE_VERSION, ...args]);
    expect(result.code, result.stdout).not.toBe(0);
    expect(result.stderr).toMatch(/values don't meet the specifications of the schema/);
    // Helm names the value (the same chart renders without it: the other file's first case).
    expect(result.stderr).toMatch(field);
  });

  it('the demo chart: an unknown mode, and a Secret name Kubernetes would refuse', async () => {
    for (const args of [
      ['--set', 'mode=vault'],
      ['--set', 'secrets.echo=Echo_SVID'],
    ]) {
      const result = await helm(['template', 'demo', DEMO, '--kube-version', KUBE_VERSION, ...args]);
      expect(result.code, result.stdout).not.toBe(0);
      expect(result.stderr).toMatch(/values don't meet the specifications of the schema/);
    }
  });

  it("the chart's kubeVersion: Kubernetes 1.28 is refused, 1.29 (native sidecars, matchConditions) is not", async () => {
    const old = await helm(['template', 't', CHART, '--kube-version', '1.28.9']);
    expect(old.code).not.toBe(0);
    expect(old.stderr).toContain(
      'chart requires kubeVersion: >=1.29.0-0 which is incompatible with Kubernetes v1.28.9',
    );
    const min = await helm(['template', 't', CHART, '--kube-version', '1.29.0']);
    expect(min.code, min.stderr).toBe(0);
  });
});
