// There is no `helm` binary on this machine, so the charts are checked without rendering: the default
// values (and the demo's values for each mode) validate against values.schema.json, the schema refuses
// what the injector would refuse, every `.Values.x` a template reads exists, and what the templates say
// to the injector (its flags, the webhook paths, the annotations and the namespace label) is what the
// code answers to.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { LOG_LEVELS } from '../../src/log.js';
import { ANNOTATIONS, NAMESPACE_LABEL } from '../../src/webhook/annotations.js';
import { IDENTITY_MODES, INJECT_WEBHOOK_OPTIONS } from '../../src/webhook/options.js';
import { REVIEW_PATHS } from '../../src/webhook/webhook-server.js';

const HELM = new URL('../../helm/', import.meta.url).pathname;
const CHART = join(HELM, 'spiffe-sidecar');
const DEMO = join(HELM, 'examples', 'demo');

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- YAML is untyped data
type Obj = Record<string, any>;
const read = (path: string) => readFileSync(path, 'utf8');
const yamlFile = (path: string) => parseYaml(read(path)) as Obj;

function validator(chart: string) {
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
  const validate = ajv.compile(JSON.parse(read(join(chart, 'values.schema.json'))));
  return (values: unknown) => {
    const ok = validate(values);
    return { ok, errors: ajv.errorsText(validate.errors) };
  };
}

/** Helm's merge of a values file over the chart's defaults (maps merge, everything else replaces). */
function merge(base: Obj, over: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && typeof base[k] === 'object' ? merge(base[k], v) : v;
  }
  return out;
}

function templates(chart: string): Map<string, string> {
  const dir = join(chart, 'templates');
  return new Map(readdirSync(dir).map((f) => [f, read(join(dir, f))]));
}

describe('the injector chart', () => {
  const values = yamlFile(join(CHART, 'values.yaml'));
  const check = validator(CHART);

  it('values.yaml validates against values.schema.json', () => {
    const result = check(values);
    expect(result.ok, result.errors).toBe(true);
  });

  it.each([
    ['a failure policy Kubernetes does not have', { webhook: { failurePolicy: 'Sometimes' } }],
    ['a timeout over the API server limit', { webhook: { timeoutSeconds: 60 } }],
    ['an unknown identity mode', { sidecar: { defaultMode: 'vault' } }],
    ['port 0', { sidecar: { port: 0 } }],
    ['a port as text', { sidecar: { adminPort: '15020' } }],
    ['a quantity with a space', { sidecar: { resources: { memoryLimit: '1 Gi' } } }],
    ['an image with a space', { image: { repository: 'ghcr.io/x y' } }],
    ['an http issuer', { sidecar: { jwt: { issuer: 'http://kubernetes.default.svc' } } }],
    ['an unknown certificate source', { certificate: { source: 'vault' } }],
    ['a misspelt key', { replica: 3 }],
    ['a bad namespace to exclude', { webhook: { excludeNamespaces: ['Kube_System'] } }],
  ])('the schema refuses %s', (_, override) => {
    expect(check(merge(values, override)).ok).toBe(false);
  });

  it("the schema's enums are the code's", () => {
    const schema = JSON.parse(read(join(CHART, 'values.schema.json')));
    expect(schema.properties.sidecar.properties.defaultMode.enum).toEqual([...IDENTITY_MODES]);
    expect(schema.properties.logLevel.enum).toEqual([...LOG_LEVELS]);
  });

  it('every .Values path a template reads exists in values.yaml', () => {
    for (const [file, text] of templates(CHART)) {
      for (const [, path] of text.matchAll(/\.Values\.([A-Za-z0-9_.]+)/g)) {
        const found = path.split('.').reduce<unknown>((o, k) => (o as Obj | undefined)?.[k], values);
        expect(found, `${file}: .Values.${path}`).not.toBeUndefined();
      }
    }
  });

  it('the Deployment runs inject-webhook with flags it has, and probes its health paths over HTTPS', () => {
    const deployment = templates(CHART).get('deployment.yaml') as string;
    expect(deployment).toMatch(/args:\n\s+- inject-webhook\n/);
    const flags = [...deployment.matchAll(/^\s+- --([a-z0-9-]+)=/gm)].map((m) => m[1]);
    expect(flags.length).toBeGreaterThan(10);
    for (const flag of flags) expect(Object.keys(INJECT_WEBHOOK_OPTIONS), `--${flag}`).toContain(flag);
    // The certificate files are in the mounted Secret.
    const mountPath = /mountPath: (\/etc\/spiffe-sidecar-injector\/tls)\n/.exec(deployment)?.[1];
    expect(deployment).toContain(`--tls-cert-file=${mountPath}/tls.crt`);
    expect(deployment).toContain(`--tls-key-file=${mountPath}/tls.key`);
    expect(deployment.match(/scheme: HTTPS/g)).toHaveLength(2);
    expect(deployment).toMatch(/readOnlyRootFilesystem: true/);
    expect(deployment).toMatch(/runAsNonRoot: true/);
  });

  it('the webhook configuration calls the paths, annotation and label the injector answers to', () => {
    const mwc = templates(CHART).get('mutatingwebhookconfiguration.yaml') as string;
    const paths = [...mwc.matchAll(/path: (\/[a-z-]+)/g)].map((m) => m[1]);
    expect(paths.sort()).toEqual(Object.keys(REVIEW_PATHS).sort());
    expect(mwc).toContain(`'${ANNOTATIONS.inject}' in object.metadata.annotations`);
    expect(mwc.match(new RegExp(`key: ${NAMESPACE_LABEL}\\n`, 'g'))).toHaveLength(2);
    expect(mwc.match(/sideEffects: None/g)).toHaveLength(2);
    expect(mwc.match(/admissionReviewVersions: \["v1"\]/g)).toHaveLength(2);
    expect(mwc.match(/failurePolicy: \{\{ \.Values\.webhook\.failurePolicy \}\}/g)).toHaveLength(2);
    expect(read(join(CHART, 'templates', '_helpers.tpl'))).toContain('(list "kube-system" .Release.Namespace)');
  });

  it('the certificate comes from cert-manager or from the Job, and the Secret keys match each', () => {
    const all = templates(CHART);
    expect(all.get('certificate-cert-manager.yaml')).toMatch(
      /^\{\{- if eq \(include "spiffe-sidecar.certificateSource" \.\) "cert-manager" \}\}/,
    );
    expect(all.get('certificate-job.yaml')).toMatch(
      /^\{\{- if eq \(include "spiffe-sidecar.certificateSource" \.\) "job" \}\}/,
    );
    expect(all.get('_helpers.tpl')).toContain('.Capabilities.APIVersions.Has "cert-manager.io/v1"');
    // A CA of the chart's own signs the serving certificate, and the API server trusts that CA: a renewal of the
    // serving certificate changes nothing it trusts (signed by a self-signed Issuer, each would replace it).
    const certManager = all.get('certificate-cert-manager.yaml') as string;
    expect(certManager).toMatch(/name: \{\{ include "spiffe-sidecar\.name" \. \}\}-ca\n[\s\S]*isCA: true/);
    expect(certManager).toMatch(/ca:\n\s+secretName: \{\{ include "spiffe-sidecar\.name" \. \}\}-ca/);
    expect(all.get('mutatingwebhookconfiguration.yaml')).toMatch(
      /cert-manager\.io\/inject-ca-from: \{\{ \.Release\.Namespace \}\}\/\{\{ include "spiffe-sidecar\.name" \. \}\}-ca\n/,
    );
    expect(all.get('deployment.yaml')).toMatch(
      /- \{ key: tls\.crt, path: tls\.crt \}[\s\S]*- \{ key: cert, path: tls\.crt \}/,
    );
  });
});

describe('the demo chart (examples)', () => {
  const defaults = yamlFile(join(DEMO, 'values.yaml'));
  const check = validator(DEMO);

  it.each(['values.yaml', 'values-spire.yaml', 'values-file.yaml', 'values-jwt.yaml'])('%s validates', (file) => {
    const merged = merge(defaults, yamlFile(join(DEMO, file)));
    const result = check(merged);
    expect(result.ok, result.errors).toBe(true);
  });

  it('each mode has its values file, and the schema refuses an unknown mode', () => {
    for (const mode of IDENTITY_MODES) expect(yamlFile(join(DEMO, `values-${mode}.yaml`)).mode).toBe(mode);
    expect(check(merge(defaults, { mode: 'vault' })).ok).toBe(false);
  });

  it('the templates use only annotations the injector knows, and values that exist', () => {
    const known = Object.values(ANNOTATIONS) as string[];
    for (const [file, text] of templates(DEMO)) {
      for (const [name] of text.matchAll(/spiffe-sidecar\.io\/[a-z-]+/g))
        expect(known, `${file}: ${name}`).toContain(name);
      for (const [, path] of text.matchAll(/\.Values\.([A-Za-z0-9_.]+)/g)) {
        const found = path.split('.').reduce<unknown>((o, k) => (o as Obj | undefined)?.[k], defaults);
        expect(found, `${file}: .Values.${path}`).not.toBeUndefined();
      }
    }
  });
});
