// Configurations the tests build: file mode's three files (paths only: buildConfig reads nothing), and the
// error a refused configuration throws.
import { expect } from 'vitest';
import { buildConfig, type RawOptions } from '../../src/config.js';
import { SidecarError } from '../../src/errors.js';

/** File mode in front of an app on loopback: a complete configuration but for its allow rules. */
export const FILE_MODE: RawOptions = {
  upstream: 'http://127.0.0.1:8080',
  'mtls-cert-file': '/certs/tls.crt',
  'mtls-key-file': '/certs/tls.key',
  'mtls-ca-file': '/certs/ca.crt',
};

/** The SidecarError that `options` are refused with; fails the test if they are accepted. */
export function configRefusal(options: RawOptions): SidecarError {
  try {
    buildConfig(options);
  } catch (err) {
    expect(err).toBeInstanceOf(SidecarError);
    return err as SidecarError;
  }
  throw new Error('the configuration was accepted');
}
