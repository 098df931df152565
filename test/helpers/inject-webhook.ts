// One real inject webhook per test file: a CA, the Secret volume it signs and the running `inject-webhook`,
// started before the file's tests and stopped after them; and the check that a review was denied.
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import {
  createWebhookCa,
  issueServingCertificate,
  type PodFixture,
  reviewPod,
  type RunningWebhook,
  startWebhook,
  stopWebhook,
  writeServingSecret,
} from './admission.js';
import { tempDir } from './pki.js';

export interface InjectWebhook extends RunningWebhook {
  /** The CA of its serving certificate: what the API server trusts (`caBundle`). */
  caPem: string;
}

/** Starts the webhook with `extra` flags before the file's tests. Read its fields inside tests and hooks. */
export function useInjectWebhook(...extra: string[]): InjectWebhook {
  const webhook = {} as InjectWebhook;
  let remove: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const dir = await tempDir();
    remove = dir.remove;
    const ca = await createWebhookCa();
    webhook.caPem = ca.certPem;
    const tls = join(dir.path, 'tls');
    await writeServingSecret(tls, await issueServingCertificate(ca));
    Object.assign(webhook, await startWebhook(tls, ...extra));
  });
  afterAll(async () => {
    if (webhook.running) await stopWebhook(webhook);
    await remove?.();
  });
  return webhook;
}

/** Reviews `pod` and expects an admission denial (400, nothing patched); resolves with its message. */
export async function expectReviewDenied(webhook: InjectWebhook, pod: PodFixture): Promise<string> {
  const answer = await reviewPod(webhook.port, webhook.caPem, pod);
  expect(answer.response.uid).toBe(answer.uid);
  expect(answer.response.allowed, JSON.stringify(answer.response)).toBe(false);
  expect(answer.response.patch).toBeUndefined();
  expect(answer.response.status?.code).toBe(400);
  return answer.response.status?.message ?? '';
}
