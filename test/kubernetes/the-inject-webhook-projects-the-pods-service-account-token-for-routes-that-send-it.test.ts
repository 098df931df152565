// The real inject webhook over HTTPS, for outbound routes that send the pod's own service-account token
// (`auth=k8s-token,audience=AUD`): the JSONPatch adds one projected volume with a token per audience, mounted
// read-only in the sidecar and in no app container; the sidecar's own CLI reads each route as auth=jwt with
// that token file; and the rendered sidecar, started for real, sends the token and the one kubelet rotates in.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli.js';
import { buildConfig } from '../../src/config.js';
import { applyReviewPatch, deploymentPod, type PodFixture, reviewPod } from '../helpers/admission.js';
import { useInjectWebhook } from '../helpers/inject-webhook.js';
import { startCli, waitForEvent } from '../helpers/process.js';
import { writeSecretVolume } from '../helpers/secret-volume.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();
const webhook = useInjectWebhook();

type Container = Record<string, unknown> & {
  name: string;
  args: string[];
  env: { name: string; value: string }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
};

const TOKENS_MOUNT = { name: 'spiffe-sidecar-tokens', mountPath: '/var/run/spiffe-sidecar/tokens', readOnly: true };
const ORDERS = '127.0.0.1:15001=https://orders.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/orders';
const PAYMENTS = '127.0.0.1:15002=https://payments.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/payments';

async function inject(pod: PodFixture) {
  const answer = await reviewPod(webhook.port, webhook.caPem, pod);
  expect(answer.response.allowed, JSON.stringify(answer.response)).toBe(true);
  const patched = await applyReviewPatch(pod, answer);
  const init = (patched.spec.initContainers ?? []) as Container[];
  expect(init[0]?.name).toBe('spiffe-sidecar');
  return { answer, patched, sidecar: init[0] };
}

/** The sidecar's own CLI and config validation, on the injected arguments and environment. */
function sidecarConfig(container: Container) {
  const command = parseCommandLine(container.args, Object.fromEntries(container.env.map((e) => [e.name, e.value])));
  expect(command.command).toBe('run');
  return buildConfig((command as { options: Parameters<typeof buildConfig>[0] }).options);
}

function tokensVolume(patched: PodFixture) {
  const volumes = patched.spec.volumes as { name: string; projected?: { sources: unknown[] } }[];
  expect(volumes.filter((v) => v.name === 'spiffe-sidecar-tokens')).toHaveLength(1);
  return volumes.find((v) => v.name === 'spiffe-sidecar-tokens')!;
}

/** No container but the sidecar, init or app, mounts the tokens. */
function expectOnlyTheSidecarMountsTokens(patched: PodFixture) {
  const all = [...((patched.spec.initContainers ?? []) as Container[]), ...(patched.spec.containers as Container[])];
  const mounting = all.filter((c) => (c.volumeMounts ?? []).some((m) => m.name === 'spiffe-sidecar-tokens'));
  expect(mounting.map((c) => c.name)).toEqual(['spiffe-sidecar']);
}

describe('the inject webhook projects the pod’s service-account token for routes that send it', () => {
  it('one route: a token with its audience, mounted read-only in the sidecar alone, and the route as auth=jwt with its file', async () => {
    const pod = deploymentPod({
      'spiffe-sidecar.io/inject': 'true',
      'spiffe-sidecar.io/outbound': `${ORDERS},auth=k8s-token,audience=orders`,
    });
    const { answer, patched, sidecar } = await inject(pod);
    expect(answer.patch?.map((op) => `${op.op} ${op.path}`)).toEqual([
      'add /spec/initContainers',
      'add /spec/volumes/-',
      'add /spec/volumes/-',
      'add /metadata/annotations/spiffe-sidecar.io~1status',
    ]);
    expect(patched.spec.volumes).toEqual([
      ...(pod.spec.volumes as unknown[]),
      { name: 'spiffe-sidecar-workload-api', csi: { driver: 'csi.spiffe.io', readOnly: true } },
      {
        name: 'spiffe-sidecar-tokens',
        projected: {
          sources: [{ serviceAccountToken: { audience: 'orders', expirationSeconds: 3600, path: 'orders' } }],
        },
      },
    ]);
    expect(sidecar.volumeMounts).toEqual([
      { name: 'spiffe-sidecar-workload-api', mountPath: '/spiffe-workload-api', readOnly: true },
      TOKENS_MOUNT,
    ]);
    // The app container is exactly as it was: no token mount, no new volume.
    expect(patched.spec.containers).toEqual(pod.spec.containers);
    expectOnlyTheSidecarMountsTokens(patched);
    expect(sidecar.args).toEqual([
      'run',
      '--admin-listen=0.0.0.0:15020',
      `--outbound=${ORDERS},auth=jwt,audience=orders,token-file=/var/run/spiffe-sidecar/tokens/orders`,
    ]);
    const config = sidecarConfig(sidecar);
    expect(config.source).toMatchObject({ kind: 'workload-api' });
    expect(config.outbound).toHaveLength(1);
    expect(config.outbound[0].remote.origin).toBe('https://orders.shop.svc:8443');
    expect(config.outbound[0]).toMatchObject({
      id: 'spiffe://example.org/ns/shop/sa/orders',
      auth: 'jwt',
      audience: 'orders',
      tokenFile: '/var/run/spiffe-sidecar/tokens/orders',
    });
  });

  it('two audiences: one volume with a token each, a shared audience shares its file, token-expiration sets their lifetime', async () => {
    // File mode, inbound and outbound, with an init container and a second app container of the pod's own.
    const app = deploymentPod(undefined).spec.containers[0];
    const pod = deploymentPod(
      {
        'spiffe-sidecar.io/inject': 'true',
        'spiffe-sidecar.io/mode': 'file',
        'spiffe-sidecar.io/secret': 'orders-svid',
        'spiffe-sidecar.io/app-port': '8080',
        'spiffe-sidecar.io/allow': 'spiffe://example.org/ns/shop/sa/frontend',
        'spiffe-sidecar.io/token-expiration': '2h',
        'spiffe-sidecar.io/outbound': [
          `${ORDERS},auth=k8s-token,audience=orders`,
          `${PAYMENTS},audience=https://payments.example/api,auth=k8s-token`,
          '127.0.0.1:15003=https://orders-admin.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/orders,auth=k8s-token,audience=orders',
          '127.0.0.1:15004=https://stock.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/stock',
        ].join('\n'),
      },
      {
        initContainers: [{ name: 'migrate', image: 'ghcr.io/example/orders:1.4.2', volumeMounts: app.volumeMounts }],
        containers: [app, { ...app, name: 'worker', ports: [] }],
      },
    );
    const { patched, sidecar } = await inject(pod);
    expect(tokensVolume(patched)).toEqual({
      name: 'spiffe-sidecar-tokens',
      projected: {
        sources: [
          { serviceAccountToken: { audience: 'orders', expirationSeconds: 7200, path: 'orders' } },
          {
            serviceAccountToken: {
              audience: 'https://payments.example/api',
              expirationSeconds: 7200,
              path: 'https-payments-example-api',
            },
          },
        ],
      },
    });
    expect(sidecar.volumeMounts).toEqual([
      { name: 'spiffe-sidecar-identity', mountPath: '/var/run/spiffe-sidecar/identity', readOnly: true },
      TOKENS_MOUNT,
    ]);
    expect(patched.spec.containers).toEqual(pod.spec.containers);
    expect((patched.spec.initContainers as unknown[]).slice(1)).toEqual(pod.spec.initContainers);
    expectOnlyTheSidecarMountsTokens(patched);

    const config = sidecarConfig(sidecar);
    expect(config.source).toMatchObject({ kind: 'files' });
    expect(config.outbound.map((r) => [r.port, r.auth, r.audience, r.tokenFile])).toEqual([
      [15001, 'jwt', 'orders', '/var/run/spiffe-sidecar/tokens/orders'],
      [15002, 'jwt', 'https://payments.example/api', '/var/run/spiffe-sidecar/tokens/https-payments-example-api'],
      [15003, 'jwt', 'orders', '/var/run/spiffe-sidecar/tokens/orders'],
      [15004, 'mtls', undefined, undefined],
    ]);
    // The options stay where the pod wrote them; only auth= changes and token-file= is added last.
    expect(sidecar.args).toContain(
      `--outbound=${PAYMENTS},audience=https://payments.example/api,auth=jwt,token-file=/var/run/spiffe-sidecar/tokens/https-payments-example-api`,
    );
  });

  it('file names never collide: audiences that read alike get -2, -3; one without letters or digits gets "token"', async () => {
    const long = `https://${'a'.repeat(120)}.example`;
    const audiences = ['orders', 'Orders', 'ORDERS', '::', long];
    const pod = deploymentPod(
      {
        'spiffe-sidecar.io/inject': 'true',
        'spiffe-sidecar.io/outbound': audiences
          .map((a, i) => `127.0.0.1:${15001 + i}=http://127.0.0.1:${9001 + i},auth=k8s-token,audience=${a}`)
          .join(' '),
      },
      // The pod's own volumes named like token files do not matter: the tokens live in the sidecar's volume.
      {
        volumes: [
          ...(deploymentPod(undefined).spec.volumes as unknown[]),
          { name: 'orders', emptyDir: {} },
          { name: 'token', emptyDir: {} },
        ],
      },
    );
    const { patched, sidecar } = await inject(pod);
    const sources = (tokensVolume(patched).projected!.sources as { serviceAccountToken: { path: string } }[]).map(
      (s) => s.serviceAccountToken,
    );
    const paths = sources.map((s) => s.path);
    expect(paths.slice(0, 4)).toEqual(['orders', 'orders-2', 'orders-3', 'token']);
    expect(paths[4]).toBe(`https-${'a'.repeat(57)}`);
    for (const path of paths) expect(path).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
    expect(sources.map((s) => (s as unknown as { audience: string }).audience)).toEqual(audiences);
    expect(sidecarConfig(sidecar).outbound.map((r) => r.tokenFile)).toEqual(
      paths.map((p) => `/var/run/spiffe-sidecar/tokens/${p}`),
    );
  });

  it('JWT mode, outbound only: the token to a loopback remote, with no X.509 identity and no volume for callers', async () => {
    const pod = deploymentPod({
      'spiffe-sidecar.io/inject': 'true',
      'spiffe-sidecar.io/mode': 'jwt',
      'spiffe-sidecar.io/outbound': '127.0.0.1:15001=http://127.0.0.1:9090,auth=k8s-token,audience=agent',
    });
    const { patched, sidecar } = await inject(pod);
    expect(sidecar.args).toEqual([
      'run',
      '--admin-listen=0.0.0.0:15020',
      '--outbound=127.0.0.1:15001=http://127.0.0.1:9090,auth=jwt,audience=agent,token-file=/var/run/spiffe-sidecar/tokens/agent',
    ]);
    expect(sidecar.volumeMounts).toEqual([TOKENS_MOUNT]);
    expect((patched.spec.volumes as { name: string }[]).map((v) => v.name)).toEqual([
      'kube-api-access-7xk2p',
      'spiffe-sidecar-tokens',
    ]);
    const config = sidecarConfig(sidecar);
    expect(config.source).toBeUndefined();
    expect(config.inbound).toBe(false);
  });

  it('the rendered sidecar sends the projected token, and the one kubelet rotates in', async () => {
    const pod = deploymentPod({
      'spiffe-sidecar.io/inject': 'true',
      'spiffe-sidecar.io/mode': 'jwt',
      'spiffe-sidecar.io/outbound': '127.0.0.1:15001=http://127.0.0.1:9090,auth=k8s-token,audience=agent',
    });
    const { sidecar } = await inject(pod);
    // The projected volume as kubelet writes it (atomically, through ..data); only the network differs.
    const tokens = join(ws.path, 'tokens');
    const first = 'eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiYWdlbnQiXSwibiI6MX0.c2lnbmF0dXJlLTE';
    const second = 'eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiYWdlbnQiXSwibiI6Mn0.c2lnbmF0dXJlLTI';
    await writeSecretVolume(tokens, { agent: first });
    const args = sidecar.args.map((a) =>
      a
        .replace('/var/run/spiffe-sidecar/tokens', tokens)
        .replace('127.0.0.1:15001=http://127.0.0.1:9090', `127.0.0.1:0=${ws.app.url}`)
        .replace(/^--admin-listen=.*/, '--admin-listen=127.0.0.1:0'),
    );
    const process = startCli(args);
    try {
      const started = await waitForEvent(process, 'started');
      const port = (started.outbound as { listen: { port: number } }[])[0].listen.port;
      const call = async () => {
        const res = await fetch(`http://127.0.0.1:${port}/work`);
        expect(res.status).toBe(200);
        return ws.app.seen.at(-1)?.headers.authorization;
      };
      expect(await call()).toBe(`Bearer ${first}`);
      await writeSecretVolume(tokens, { agent: second });
      await expect.poll(call, { timeout: 5000, interval: 250 }).toBe(`Bearer ${second}`);
    } finally {
      process.child.kill('SIGTERM');
      await process.exited;
    }
  });
});
