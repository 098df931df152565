// `spiffe-sidecar inject-webhook`: flags → config → certificate → HTTPS server. Resolves once it is
// listening; a startup problem is a SidecarError (main prints it and exits 1). stop() closes the
// listener and the certificate watch, then flushes the log.
import { createLogger, prettyDestination } from '../log.js';
import { parseWebhookOptions } from './options.js';
import { WebhookCertificate } from './webhook-certificate.js';
import { WebhookServer } from './webhook-server.js';

export interface RunningWebhook {
  stop(): Promise<void>;
}

export async function runInjectWebhook(options: Record<string, unknown>): Promise<RunningWebhook> {
  const config = parseWebhookOptions(options as Parameters<typeof parseWebhookOptions>[0]);
  const log = createLogger(config.logLevel, config.logFormat === 'pretty' ? prettyDestination() : undefined);
  let server: WebhookServer | undefined;
  const certificate = await WebhookCertificate.load(config.tlsCertFile, config.tlsKeyFile, log, (pair) =>
    server?.setCertificate(pair),
  );
  try {
    server = await WebhookServer.start({
      ...config.listen,
      certificate: certificate.current(),
      requestTimeoutMs: config.requestTimeoutMs,
      template: config.sidecar,
      log,
    });
  } catch (err) {
    await certificate.close();
    throw err;
  }
  const running = server;
  log.info(
    {
      event: 'webhook_started',
      listen: running.address(),
      image: config.sidecar.image,
      default_mode: config.sidecar.defaultMode,
    },
    'inject webhook started',
  );
  return {
    async stop() {
      log.info({ event: 'webhook_stopping' }, 'stopping');
      await running.close();
      await certificate.close();
      await new Promise<void>((resolve) => log.flush(() => resolve()));
    },
  };
}
