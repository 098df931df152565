// PROXY protocol v2 (HAProxy's proxy-protocol.txt §2.2): the binary header sent to the app before the
// first byte of a TCP connection, so that an app that speaks no HTTP still learns who called. It carries
// the caller's address and ours, `PP2_TYPE_SSL` (the connection was TLS and the client certificate was
// verified), and the caller's SPIFFE ID in a TLV of the custom range.
import { isIPv4, isIPv6 } from 'node:net';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Version 2, command PROXY. */
const VERSION_COMMAND = 0x21;
const FAMILY_UNSPEC = 0x00;
const FAMILY_TCP4 = 0x11;
const FAMILY_TCP6 = 0x21;

export const PP2_TYPE_SSL = 0x20;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;
/** The first type of the range the spec leaves to applications (0xE0-0xEF): the verified SPIFFE ID. */
export const PP2_TYPE_SPIFFE_ID = 0xe0;
/** PP2_TYPE_SSL client bits: TLS, and a client certificate sent on this connection or with the session. */
export const PP2_CLIENT_SSL = 0x01;
export const PP2_CLIENT_CERT_CONN = 0x02;
export const PP2_CLIENT_CERT_SESS = 0x04;

export interface ProxyHeaderFields {
  source: { address: string; port: number };
  destination: { address: string; port: number };
  /** The caller's verified SPIFFE ID. */
  spiffeId: string;
  /** The TLS version negotiated, e.g. TLSv1.3. */
  tlsVersion: string;
  /** The TLS session was resumed: the certificate came with the session, not on this connection. */
  resumed: boolean;
}

/** `::ffff:10.0.0.1` is an IPv4 peer on a dual-stack socket: it is sent as IPv4. */
function unmapped(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1] : address;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

/** Expands `::`-compressed IPv6 (with an optional dotted IPv4 tail) to 16 bytes. */
function ipv6Bytes(address: string): Buffer {
  let text = address.replace(/%.*$/, '');
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1].split('.').map(Number);
    text = `${text.slice(0, -v4[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const headParts = head ? head.split(':') : [];
  const tailParts = tail === undefined ? [] : tail ? tail.split(':') : [];
  const parts =
    tail === undefined
      ? headParts
      : [...headParts, ...new Array<string>(8 - headParts.length - tailParts.length).fill('0'), ...tailParts];
  const out = Buffer.alloc(16);
  parts.forEach((p, i) => out.writeUInt16BE(Number.parseInt(p, 16), i * 2));
  return out;
}

function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

export function proxyV2Header(fields: ProxyHeaderFields): Buffer {
  const source = unmapped(fields.source.address);
  const destination = unmapped(fields.destination.address);
  let family = FAMILY_UNSPEC;
  let addresses = Buffer.alloc(0);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(fields.source.port, 0);
  ports.writeUInt16BE(fields.destination.port, 2);
  if (isIPv4(source) && isIPv4(destination)) {
    family = FAMILY_TCP4;
    addresses = Buffer.concat([ipv4Bytes(source), ipv4Bytes(destination), ports]);
  } else if (isIPv6(source) && isIPv6(destination)) {
    family = FAMILY_TCP6;
    addresses = Buffer.concat([ipv6Bytes(source), ipv6Bytes(destination), ports]);
  }
  // PP2_TYPE_SSL: client bits, then verify = 0 (the certificate was verified), then sub-TLVs.
  const sslHead = Buffer.alloc(5);
  sslHead[0] = PP2_CLIENT_SSL | (fields.resumed ? PP2_CLIENT_CERT_SESS : PP2_CLIENT_CERT_CONN);
  sslHead.writeUInt32BE(0, 1);
  const ssl = tlv(
    PP2_TYPE_SSL,
    Buffer.concat([sslHead, tlv(PP2_SUBTYPE_SSL_VERSION, Buffer.from(fields.tlsVersion, 'ascii'))]),
  );
  const body = Buffer.concat([addresses, ssl, tlv(PP2_TYPE_SPIFFE_ID, Buffer.from(fields.spiffeId, 'utf8'))]);
  const head = Buffer.alloc(4);
  head[0] = VERSION_COMMAND;
  head[1] = family;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIGNATURE, head, body]);
}
