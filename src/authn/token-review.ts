// Kubernetes TokenReview: asks the API server whether a service-account token is still valid (its pod,
// secret or service account may have been deleted since it was signed). Called once per new token and
// again after the review interval. Answers `valid`, `invalid`, or `unavailable` (fail closed); never throws.
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { rootCertificates } from 'node:tls';

export type ReviewVerdict = 'valid' | 'invalid' | 'unavailable';

/** A review as the metrics name it: the API server authenticated the token, rejected it, or could not tell. */
export type TokenReviewResult = 'authenticated' | 'rejected' | 'error';

const RESULTS: Record<ReviewVerdict, TokenReviewResult> = {
  valid: 'authenticated',
  invalid: 'rejected',
  unavailable: 'error',
};

export interface TokenReviewOptions {
  /** The API server, e.g. https://kubernetes.default.svc. */
  apiServer: string;
  /** Our own service-account token, to call the API (re-read on each review: it rotates). */
  tokenFile: string;
  extraCaPem?: string;
  audiences: readonly string[];
  timeoutMs?: number;
  /** Told of every review when it ends, with its duration: the metrics' observer. */
  onReview?: (result: TokenReviewResult, seconds: number) => void;
}

export type TokenReviewer = (token: string, subject: string) => Promise<ReviewVerdict>;

export function createTokenReviewer(options: TokenReviewOptions): TokenReviewer {
  const review = reviewer(options);
  const { onReview } = options;
  if (!onReview) return review;
  return async (token, subject) => {
    const started = performance.now();
    const verdict = await review(token, subject);
    try {
      onReview(RESULTS[verdict], (performance.now() - started) / 1000);
    } catch {
      // A metrics observer must not turn a verdict into an error.
    }
    return verdict;
  };
}

function reviewer(options: TokenReviewOptions): TokenReviewer {
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
      let settled = false;
      const done = (verdict: ReviewVerdict) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        req.destroy();
        resolve(verdict);
      };
      // One deadline for the whole exchange: a server that sends headers and then stalls cannot hang us.
      const deadline = setTimeout(() => done('unavailable'), options.timeoutMs ?? 5000);
      const req = request(
        url,
        {
          method: 'POST',
          ca,
          headers: {
            authorization: `Bearer ${ownToken}`,
            'content-type': 'application/json',
            accept: 'application/json',
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 64 * 1024) done('unavailable');
            else chunks.push(c);
          });
          res.on('error', () => done('unavailable'));
          res.on('aborted', () => done('unavailable'));
          res.on('end', () => {
            if (res.statusCode !== 200 && res.statusCode !== 201) return done('unavailable');
            try {
              const status = JSON.parse(Buffer.concat(chunks).toString('utf8'))?.status;
              done(status?.authenticated === true && status?.user?.username === subject ? 'valid' : 'invalid');
            } catch {
              done('unavailable');
            }
          });
        },
      );
      req.on('error', () => done('unavailable'));
      req.end(body);
    });
  };
}
