// Kubernetes TokenReview: asks the API server whether a service-account token is still valid (its pod,
// secret or service account may have been deleted since it was signed). Called once per new token and
// again after the review interval. Answers `valid`, `invalid`, or `unavailable` (fail closed); never throws.
// The API server is trusted by the CAs it is given (`--k8s-api-ca-file`, see jwt-mode.ts), nothing else.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';

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
  /** The CA certificates (PEM) the API server's certificate must chain to: the only ones trusted. */
  caPem: readonly string[];
  /** Asked of the API server with the token; an answer must name one of them (see `verdictOf`). */
  audiences: readonly string[];
  timeoutMs?: number;
  /** Told of every review when it ends, with its duration: the metrics' observer. */
  onReview?: (result: TokenReviewResult, seconds: number) => void;
  /** Reviews under way at once, at most (default 32); past it the answer is `unavailable` (503). */
  maxInFlight?: number;
  /** How long a token the API server refused is refused without asking again (the review interval). */
  rememberInvalidMs?: number;
}

const DEFAULT_MAX_IN_FLIGHT = 32;
/** Refused tokens remembered at most (oldest first out): a bound on memory, not on safety. */
const MAX_REMEMBERED_INVALID = 10_000;

export type TokenReviewer = (token: string, subject: string) => Promise<ReviewVerdict>;

export function createTokenReviewer(options: TokenReviewOptions): TokenReviewer {
  return guarded(observed(reviewer(options), options.onReview), options);
}

/**
 * What a caller can make us ask the API server is bounded: a token that costs nothing to forge (TokenReview
 * alone checks no signature before asking) must not become a flood of reviews that gets the API server to
 * throttle us for everyone. So: one review per token at a time (concurrent requests share it), a refused
 * token is refused from memory for the review interval, and past `maxInFlight` reviews the answer is
 * `unavailable` (503, fail closed) without asking.
 */
function guarded(review: TokenReviewer, options: TokenReviewOptions): TokenReviewer {
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const rememberMs = options.rememberInvalidMs ?? 0;
  const inFlight = new Map<string, Promise<ReviewVerdict>>();
  const refused = new Map<string, number>();
  return (token, subject) => {
    const key = createHash('sha256').update(token).digest('base64url');
    const until = refused.get(key);
    if (until !== undefined) {
      if (Date.now() < until) return Promise.resolve('invalid');
      refused.delete(key);
    }
    const pending = inFlight.get(key);
    if (pending) return pending;
    if (inFlight.size >= maxInFlight) return Promise.resolve('unavailable');
    const asked = review(token, subject)
      .then((verdict) => {
        if (verdict === 'invalid' && rememberMs > 0) {
          if (refused.size >= MAX_REMEMBERED_INVALID) refused.delete(refused.keys().next().value as string);
          refused.set(key, Date.now() + rememberMs);
        }
        return verdict;
      })
      .finally(() => inFlight.delete(key));
    inFlight.set(key, asked);
    return asked;
  };
}

/** Tells `onReview` of every review made (not of those answered from memory). */
function observed(review: TokenReviewer, onReview: TokenReviewOptions['onReview']): TokenReviewer {
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
  const ca = [...options.caPem];
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
            let status: unknown;
            try {
              status = JSON.parse(Buffer.concat(chunks).toString('utf8'))?.status;
            } catch {
              return done('unavailable');
            }
            done(verdictOf(status, subject, options.audiences));
          });
        },
      );
      req.on('error', () => done('unavailable'));
      req.end(body);
    });
  };
}

/**
 * A TokenReview status: valid when authenticated as exactly `subject` for one of our audiences. The API
 * server answers with the audiences the token is good for among those asked; an empty or missing list means
 * the server did not check them and the token is good for the API server itself, not for us (the
 * TokenReview API's own advice to its clients): invalid.
 */
function verdictOf(status: unknown, subject: string, audiences: readonly string[]): ReviewVerdict {
  if (typeof status !== 'object' || status === null) return 'invalid';
  const { authenticated, user, audiences: granted } = status as Record<string, unknown>;
  if (authenticated !== true) return 'invalid';
  if ((user as Record<string, unknown> | undefined)?.username !== subject) return 'invalid';
  if (!Array.isArray(granted) || !granted.some((a) => typeof a === 'string' && audiences.includes(a))) return 'invalid';
  return 'valid';
}
