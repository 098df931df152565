// What a new connection sees: the serial number of the certificate the sidecar serves.
import { connect } from 'node:tls';
import type { ClientCert } from './client.js';

/** Serial numbers as lowercase hex without leading zero bytes, so OpenSSL's and ours compare equal. */
export function normalizeSerial(serial: string): string {
  return serial.toLowerCase().replace(/^(00)+(?=.)/, '');
}

export async function servedSerial(port: number, cert: ClientCert): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port, cert: cert.chainPem, key: cert.keyPem, rejectUnauthorized: false });
  try {
    await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    return normalizeSerial(socket.getPeerCertificate().serialNumber);
  } finally {
    socket.destroy();
  }
}
