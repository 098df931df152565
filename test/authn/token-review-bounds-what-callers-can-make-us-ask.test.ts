// TokenReview under a flood of tokens that cost nothing to forge: against a real HTTPS fake API server, one
// review per token at a time, a refused token refused from memory for the interval, and past the cap of
// reviews in flight an immediate `unavailable` (503) instead of another request to the API server.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenReviewer } from '../../src/authn/token-review.js';
import { type KubeApi, startKubeApi } from '../helpers/kube-api.js';

let kube: KubeApi;
let dir: string;
let tokenFile: string;

beforeAll(async () => {
  kube = await startKubeApi();
  dir = await mkdtemp(join(tmpdir(), 'token-review-'));
  tokenFile = join(dir, 'token');
  await writeFile(tokenFile, kube.callerToken);
});
afterAll(async () => {
  await kube.close();
  await rm(dir, { recursive: true, force: true });
});

const reviewer = (extra: { maxInFlight?: number; rememberInvalidMs?: number } = {}) =>
  createTokenReviewer({
    apiServer: kube.url,
    tokenFile,
    caPem: [kube.caPem],
    audiences: ['orders'],
    ...extra,
  });

describe('TokenReview bounds what callers can make us ask', () => {
  it('the same token presented at once is reviewed once', async () => {
    kube.live.set('live-1', 'system:serviceaccount:prod:a');
    const review = reviewer();
    const before = kube.reviews;
    const verdicts = await Promise.all([1, 2, 3].map(() => review('live-1', 'system:serviceaccount:prod:a')));
    expect(verdicts).toEqual(['valid', 'valid', 'valid']);
    expect(kube.reviews - before).toBe(1);
  });

  it('a refused token is refused from memory for the interval, without asking again', async () => {
    const review = reviewer({ rememberInvalidMs: 60_000 });
    const before = kube.reviews;
    expect(await review('forged-1', 'system:serviceaccount:prod:a')).toBe('invalid');
    expect(await review('forged-1', 'system:serviceaccount:prod:a')).toBe('invalid');
    expect(kube.reviews - before).toBe(1);
  });

  it('past the cap of reviews in flight the answer is unavailable at once', async () => {
    kube.live.set('live-2', 'system:serviceaccount:prod:b');
    const review = reviewer({ maxInFlight: 1 });
    const before = kube.reviews;
    const [first, second] = await Promise.all([
      review('live-2', 'system:serviceaccount:prod:b'),
      review('forged-2', 'system:serviceaccount:prod:b'),
    ]);
    expect([first, second]).toEqual(['valid', 'unavailable']);
    expect(kube.reviews - before).toBe(1);
    // Once the first is answered there is room again.
    expect(await review('forged-2', 'system:serviceaccount:prod:b')).toBe('invalid');
  });
});
