// What the inject webhook refuses about routes that send a token: a raw token-file= (the pod's author must
// not point the sidecar at its own files), an audience that is missing, malformed or the API server's, a
// lifetime Kubernetes would refuse or we will not issue, and a volume name the pod already uses. Each is an
// admission denial whose message names the annotation and the fix, and nothing is patched.
import { describe, expect, it } from 'vitest';
import { deploymentPod, reviewPod } from '../helpers/admission.js';
import { expectReviewDenied, useInjectWebhook } from '../helpers/inject-webhook.js';

const webhook = useInjectWebhook('--k8s-issuer', 'https://oidc.eks.example/id/ABC');

const ORDERS = '127.0.0.1:15001=https://orders.shop.svc:8443,id=spiffe://example.org/ns/shop/sa/orders';
const TOKEN_ROUTE = `${ORDERS},auth=k8s-token,audience=orders`;

function expectDenied(annotations: Record<string, string>, spec: Record<string, unknown> = {}) {
  return expectReviewDenied(webhook, deploymentPod({ 'spiffe-sidecar.io/inject': 'true', ...annotations }, spec));
}

const route = (r: string) => ({ 'spiffe-sidecar.io/outbound': r });

describe('the inject webhook denies token routes it cannot project safely', () => {
  it.each([
    [
      'a raw token file',
      route(`${ORDERS},auth=jwt,audience=orders,token-file=/var/run/spiffe-sidecar/identity/tls.key`),
      /outbound: .*token-file is not available in an injected sidecar; send the pod's service-account token with auth=k8s-token,audience=AUD/,
    ],
    [
      'a token file next to auth=k8s-token',
      route(`${TOKEN_ROUTE},token-file=/etc/passwd`),
      /token-file is not available in an injected sidecar/,
    ],
    [
      'a token file as the first option',
      route('127.0.0.1:15001=http://127.0.0.1:9,token-file=/etc/x,auth=jwt,audience=o'),
      /token-file is not available/,
    ],
    ['no audience', route(`${ORDERS},auth=k8s-token`), /auth=k8s-token needs audience= once/],
    ['an empty audience', route(`${ORDERS},auth=k8s-token,audience=`), /audience "": 1 to 256 letters, digits/],
    ['two audiences', route(`${TOKEN_ROUTE},audience=payments`), /auth=k8s-token needs audience= once/],
    ['a wildcard in the audience', route(`${ORDERS},auth=k8s-token,audience=orders*`), /audience "orders\*": 1 to 256/],
    ['an = in the audience', route(`${ORDERS},auth=k8s-token,audience=a=b`), /audience "a=b": 1 to 256/],
    ['an audience of 257 characters', route(`${ORDERS},auth=k8s-token,audience=${'a'.repeat(257)}`), /1 to 256/],
    // A comma or a space cannot hide in an audience: it ends the option (or the route), and what follows is refused.
    ['a comma in the audience', route(`${ORDERS},auth=k8s-token,audience=a,b`), /unknown option "b"/],
    ['a space in the audience', route(`${ORDERS},auth=k8s-token,audience=a b`), /sidecar would refuse.*"b"/],
    ['auth given twice', route(`${TOKEN_ROUTE},auth=jwt`), /option auth= is given twice/],
    ['a misspelt way', route(`${ORDERS},auth=k8s,audience=orders`), /auth must be one of/],
    [
      'a tls:// remote',
      route('127.0.0.1:15001=tls://db.shop.svc:5432,id=spiffe://example.org/ns/shop/sa/db,auth=k8s-token,audience=db'),
      /a tls:\/\/ remote carries bytes/,
    ],
    [
      'an https remote in JWT mode (no SVID for its mutual TLS)',
      { 'spiffe-sidecar.io/mode': 'jwt', ...route(TOKEN_ROUTE) },
      /jwt mode has no X.509 identity.*use mode spire or file/,
    ],
    [
      "the cluster issuer as audience (the API server's)",
      route(`${ORDERS},auth=k8s-token,audience=https://oidc.eks.example/id/ABC`),
      /audience=https:\/\/oidc.eks.example\/id\/ABC is the API server's/,
    ],
    [
      "the API server's usual audience",
      route(`${ORDERS},auth=k8s-token,audience=https://kubernetes.default.svc`),
      /is the API server's: the remote could act as this pod's service account/,
    ],
    [
      'a lifetime under 10 minutes',
      { 'spiffe-sidecar.io/token-expiration': '599s', ...route(TOKEN_ROUTE) },
      /token-expiration: "599s": at least 10m/,
    ],
    [
      'a lifetime over a day',
      { 'spiffe-sidecar.io/token-expiration': '25h', ...route(TOKEN_ROUTE) },
      /token-expiration: "25h": at most 24h/,
    ],
    [
      'a lifetime in milliseconds',
      { 'spiffe-sidecar.io/token-expiration': '600500ms', ...route(TOKEN_ROUTE) },
      /token-expiration: "600500ms": whole seconds/,
    ],
    [
      'a lifetime without a unit',
      { 'spiffe-sidecar.io/token-expiration': '3600', ...route(TOKEN_ROUTE) },
      /token-expiration "3600": not a duration/,
    ],
    [
      'a lifetime with no token route',
      { 'spiffe-sidecar.io/token-expiration': '1h', ...route(ORDERS) },
      /token-expiration: "1h": needs a route with auth=k8s-token/,
    ],
  ])('%s', async (_, annotations, message) => {
    const text = await expectDenied(annotations);
    expect(text).toMatch(/^spiffe-sidecar: /);
    expect(text).toMatch(message);
  });

  it('a client secret file: the sidecar would read one of its own files as a password', async () => {
    expect(
      await expectDenied(
        route(
          `127.0.0.1:15001=http://127.0.0.1:9998,auth=client-credentials,token-endpoint=http://127.0.0.1:9999/t,client-id=x,client-secret-file=/var/run/spiffe-sidecar/identity/tls.key`,
        ),
      ),
    ).toMatch(/client-secret-file is not available in an injected sidecar/);
  });

  it("an app container that mounts one of the sidecar's volumes (the tokens)", async () => {
    const pod = deploymentPod(undefined);
    const [app] = pod.spec.containers as { volumeMounts?: unknown[] }[];
    const containers = [{ ...app, volumeMounts: [{ name: 'spiffe-sidecar-tokens', mountPath: '/stolen' }] }];
    expect(await expectDenied(route(TOKEN_ROUTE), { containers })).toMatch(
      /mounts spiffe-sidecar-tokens, a volume of the sidecar's own/,
    );
  });

  it('a pod that already has a volume named like the tokens volume', async () => {
    const volumes = [...(deploymentPod(undefined).spec.volumes as unknown[])];
    expect(
      await expectDenied(route(TOKEN_ROUTE), {
        volumes: [...volumes, { name: 'spiffe-sidecar-tokens', emptyDir: {} }],
      }),
    ).toMatch(/already has a volume named spiffe-sidecar-tokens/);
  });

  it('the same pod with its own audience and lifetime is injected', async () => {
    const answer = await reviewPod(
      webhook.port,
      webhook.caPem,
      deploymentPod({
        'spiffe-sidecar.io/inject': 'true',
        'spiffe-sidecar.io/token-expiration': '10m',
        ...route(TOKEN_ROUTE),
      }),
    );
    expect(answer.response.allowed).toBe(true);
    const volumes = answer.patch?.filter((op) => op.path === '/spec/volumes/-').map((op) => op.value);
    expect(volumes).toContainEqual({
      name: 'spiffe-sidecar-tokens',
      projected: { sources: [{ serviceAccountToken: { audience: 'orders', expirationSeconds: 600, path: 'orders' } }] },
    });
  });
});
