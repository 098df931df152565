// A fake Kubernetes API server for TokenReview: HTTPS with its own CA; it authenticates its caller by
// bearer token and knows which service-account tokens are live ("deleting" a pod revokes its token).
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createDevCa, issueCertificate } from '../../src/certs/dev-ca.js';

export interface KubeApi {
  url: string;
  caPem: string;
  /** The token the sidecar must present to call us. */
  callerToken: string;
  /** token → username of live tokens. */
  live: Map<string, string>;
  reviews: number;
  up: boolean;
  close(): Promise<void>;
}

export async function startKubeApi(): Promise<KubeApi> {
  const ca = await createDevCa({ trustDomain: 'kube.test' });
  const tls = await issueCertificate(ca, { dnsNames: ['localhost'], keyUsage: 1, extKeyUsage: ['1.3.6.1.5.5.7.3.1'] });
  const api = { live: new Map<string, string>(), reviews: 0, up: true, callerToken: 'sidecar-service-account-token' };
  const server: Server = createServer({ cert: tls.chainPem, key: tls.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (!api.up) return res.writeHead(503).end('{}');
      if (req.method !== 'POST' || req.url !== '/apis/authentication.k8s.io/v1/tokenreviews') {
        return res.writeHead(404).end('{}');
      }
      if (req.headers.authorization !== `Bearer ${api.callerToken}`) return res.writeHead(401).end('{}');
      api.reviews++;
      const review = JSON.parse(Buffer.concat(chunks).toString());
      const username = api.live.get(review.spec?.token);
      res.writeHead(201).end(
        JSON.stringify({
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          status: username
            ? { authenticated: true, user: { username }, audiences: review.spec.audiences }
            : { authenticated: false },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(api, {
    url: `https://localhost:${(server.address() as AddressInfo).port}`,
    caPem: ca.certPem,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}
