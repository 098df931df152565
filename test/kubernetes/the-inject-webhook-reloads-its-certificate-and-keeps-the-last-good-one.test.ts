// The webhook's serving certificate rotates like any Secret volume (cert-manager renews it, kubelet
// swaps `..data`): a new connection sees the new certificate, a broken or mismatched update keeps the
// last good one; at startup a bad certificate or flag is a one-line error that names it; SIGTERM stops it.
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createWebhookCa,
  issueServingCertificate,
  SIDECAR_IMAGE,
  startWebhook,
  WEBHOOK_DNS_NAME,
  writeServingSecret,
} from '../helpers/admission.js';
import { tempDir } from '../helpers/pki.js';
import { runCli } from '../helpers/process.js';
import { writeSecretVolume } from '../helpers/secret-volume.js';

let dir: string;
let removeDir: () => Promise<void>;

beforeAll(async () => {
  const made = await tempDir();
  dir = made.path;
  removeDir = made.remove;
});
afterAll(() => removeDir?.());

/** The serial number of the certificate a new connection is served (uppercase hex, as Node prints it). */
function servedSerial(port: number, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: WEBHOOK_DNS_NAME, ca: caPem }, () => {
      resolve(socket.getPeerCertificate().serialNumber.toUpperCase());
      socket.destroy();
    });
    socket.on('error', reject);
  });
}

const hex = (serial: string) => serial.toUpperCase();

/**
 * A TLS 1.2 connection that asks to renegotiate: resolves with the error code that refused it, or undefined if the
 * webhook went along. Renegotiation is refused as on the sidecar's listeners, by the context a reload makes too.
 */
function renegotiationRefusal(port: number, caPem: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: WEBHOOK_DNS_NAME, ca: caPem, maxVersion: 'TLSv1.2' });
    socket.once('secureConnect', () => {
      socket.removeListener('error', reject);
      const done = (err: Error | null | undefined) => {
        socket.destroy();
        resolve((err as NodeJS.ErrnoException | null | undefined)?.code);
      };
      socket.once('error', done);
      socket.renegotiate({}, done);
    });
    socket.once('error', reject);
  });
}

describe('the inject webhook reloads its certificate and keeps the last good one', () => {
  it('rotation is seen by new connections; a broken or mismatched update is refused', async () => {
    const ca = await createWebhookCa();
    const tls = join(dir, 'rotating');
    const first = await issueServingCertificate(ca);
    await writeServingSecret(tls, first);
    const webhook = await startWebhook(tls);
    const events = (event: string) =>
      webhook.running
        .stdout()
        .split('\n')
        .filter((line) => line.includes(`"event":"${event}"`))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const failures = (reason: string) => events('webhook_cert_reload_failed').filter((e) => e.reason === reason).length;
    try {
      expect(await servedSerial(webhook.port, ca.certPem)).toBe(hex(first.serialNumber));
      expect(await renegotiationRefusal(webhook.port, ca.certPem)).toBe('ERR_SSL_NO_RENEGOTIATION');

      const second = await issueServingCertificate(ca);
      await writeServingSecret(tls, second);
      await expect.poll(() => events('webhook_cert_loaded').length, { timeout: 10_000 }).toBe(2);
      const loaded = events('webhook_cert_loaded')[1];
      expect(loaded).toMatchObject({ trigger: 'watch', dns_names: [WEBHOOK_DNS_NAME] });
      expect(hex(loaded.serial as string)).toBe(hex(second.serialNumber));
      expect(await servedSerial(webhook.port, ca.certPem)).toBe(hex(second.serialNumber));
      expect(await renegotiationRefusal(webhook.port, ca.certPem)).toBe('ERR_SSL_NO_RENEGOTIATION');

      // A truncated certificate: refused, the second stays.
      await writeSecretVolume(tls, { 'tls.crt': second.chainPem.slice(0, 100), 'tls.key': second.keyPem });
      await expect.poll(() => failures('ERR_WEBHOOK_CERT'), { timeout: 10_000 }).toBeGreaterThan(0);
      expect(await servedSerial(webhook.port, ca.certPem)).toBe(hex(second.serialNumber));
      // One swap of the Secret volume, one reload: the same bytes read again change nothing. Reloads run
      // one after another, so any reload the second swap set off has logged before this failure did.
      expect(events('webhook_cert_loaded')).toHaveLength(2);

      // A new certificate with the old key: refused too.
      const third = await issueServingCertificate(ca);
      await writeSecretVolume(tls, { 'tls.crt': third.chainPem, 'tls.key': second.keyPem });
      await expect.poll(() => failures('ERR_KEY_MISMATCH'), { timeout: 10_000 }).toBeGreaterThan(0);
      expect(await servedSerial(webhook.port, ca.certPem)).toBe(hex(second.serialNumber));

      // The pair made whole again is taken.
      await writeServingSecret(tls, third);
      await expect
        .poll(() => servedSerial(webhook.port, ca.certPem), { timeout: 10_000 })
        .toBe(hex(third.serialNumber));

      webhook.running.child.kill('SIGTERM');
      const exit = await webhook.running.exited;
      expect(exit.code).toBe(0);
      expect(exit.stdout).toContain('"event":"webhook_stopping"');
    } finally {
      webhook.running.child.kill('SIGKILL');
    }
  });

  it('refuses to start on a bad certificate or flag, with one line naming it', async () => {
    const ca = await createWebhookCa();
    const good = join(dir, 'good');
    const serving = await issueServingCertificate(ca);
    await writeServingSecret(good, serving);
    const expired = join(dir, 'expired');
    await writeServingSecret(
      expired,
      await issueServingCertificate(ca, {
        notBefore: new Date(Date.now() - 7_200_000),
        notAfter: new Date(Date.now() - 3_600_000),
      }),
    );
    const mismatched = join(dir, 'mismatched');
    await writeSecretVolume(mismatched, {
      'tls.crt': serving.chainPem,
      'tls.key': (await issueServingCertificate(ca)).keyPem,
    });
    const tlsFlags = (d: string) => ['--tls-cert-file', join(d, 'tls.crt'), '--tls-key-file', join(d, 'tls.key')];
    const cases: [string[], RegExp][] = [
      [['--image', SIDECAR_IMAGE], /ERR_CONFIG_MISSING: --tls-cert-file is required/],
      [tlsFlags(good), /ERR_CONFIG_MISSING: --image is required/],
      [[...tlsFlags(expired), '--image', SIDECAR_IMAGE], /ERR_WEBHOOK_CERT: --tls-cert-file .*not now; renew it/],
      [[...tlsFlags(mismatched), '--image', SIDECAR_IMAGE], /ERR_KEY_MISMATCH: --tls-key-file/],
      [
        [...tlsFlags(join(dir, 'none')), '--image', SIDECAR_IMAGE],
        /ERR_FILE_READ: --tls-(cert|key)-file .*no such file/,
      ],
      [
        [...tlsFlags(good), '--image', 'ghcr.io/x/y:1 --privileged'],
        /ERR_CONFIG_INVALID: --image .*not an image reference/,
      ],
      [
        [...tlsFlags(good), '--image', SIDECAR_IMAGE, '--default-mode', 'vault'],
        /--default-mode "vault": use one of spire, file, jwt/,
      ],
      [
        [...tlsFlags(good), '--image', SIDECAR_IMAGE, '--sidecar-port', '0'],
        /--sidecar-port "0": a port from 1 to 65535/,
      ],
      [
        [...tlsFlags(good), '--image', SIDECAR_IMAGE, '--admin-port', '8443'],
        /--sidecar-port and --admin-port are both 8443/,
      ],
      [
        [...tlsFlags(good), '--image', SIDECAR_IMAGE, '--memory-limit', '1 GB'],
        /--memory-limit "1 GB": a Kubernetes quantity/,
      ],
      [
        [...tlsFlags(good), '--image', SIDECAR_IMAGE, '--k8s-issuer', 'http://k'],
        /--k8s-issuer "http:\/\/k": an https:\/\/ URL/,
      ],
      [
        [...tlsFlags(good), '--image', SIDECAR_IMAGE, '--request-timeout', '5m'],
        /--request-timeout 5m: must be between 1s and 60s/,
      ],
      [
        [...tlsFlags(good), '--image', SIDECAR_IMAGE, '--allow', 'x'],
        /ERR_CONFIG_INVALID: --allow is a flag of 'run', not of 'inject-webhook'/,
      ],
    ];
    // A few at a time: a dozen node processes at once would crowd two cores.
    const results: Awaited<ReturnType<typeof runCli>>[] = [];
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      results.push(
        ...(await Promise.all(batch.map(([args]) => runCli(['inject-webhook', '--listen', '127.0.0.1:0', ...args])))),
      );
    }
    results.forEach((result, i) => {
      expect(result.code, result.stderr).toBe(1);
      expect(result.stderr).toMatch(cases[i][1]);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    });
  });
});
