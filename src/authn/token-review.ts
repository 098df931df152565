// Kubernetes TokenReview: asks the API server whether a service-account token is still valid (its pod,
// secret or service account may have been deleted since it was signed). Called once per new token and
// again after the review interval. Answers `valid`, `invalid`, or `unavailable` (fail closed); never throws.
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { rootCertificates } from 'node:tls';

export type ReviewVerdict = 'valid' | 'invalid' | 'unavailable';

export interface TokenReviewOptions {
  /** The API server, e.g. https://kubernetes.default.svc. */
  apiServer: string;
  /** Our own service-account token, to call the API (re-read on each review: it rotates). */
  tokenFile: string;
  extraCaPem?: string;
  audiences: readonly string[];
  timeoutMs?: number;
}

export type TokenReviewer = (token: string, subject: string) => Promise<ReviewVerdict>;

export function createTokenReviewer(options: TokenReviewOptions): TokenReviewer {
  const ca = [...rootCertificates, ...(options.extraCaPem ? [options.extraCaPem] : [])];
  const url = `${options.apiServer.replace(/\/$/, '')}/apis/authentication.k8s.io/v1/tokenreviews`;
  return async (token, subject) => {
    let ownToken: string;
    try {
      ownToken = (await readFile(options.tokenFile, 'utf8')).trim();
    } catch {
      return 'unavailable';
    }
    const body = JSON.stringify({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenReview',
      spec: { token, audiences: [...options.audiences] },
    });
    return new Promise<ReviewVerdict>((resolve) => {
      const req = request(
        url,
        {
          method: 'POST',
          ca,
          timeout: options.timeoutMs ?? 5000,
          headers: {
            authorization: `Bearer ${ownToken}`,
            'content-type': 'application/json',
            accept: 'application/json',
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode !== 200 && res.statusCode !== 201) return resolve('unavailable');
            try {
              const status = JSON.parse(Buffer.concat(chunks).toString('utf8'))?.status;
              resolve(status?.authenticated === true && status?.user?.username === subject ? 'valid' : 'invalid');
            } catch {
              resolve('unavailable');
            }
          });
        },
      );
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve('unavailable'));
      req.end(body);
    });
  };
}
