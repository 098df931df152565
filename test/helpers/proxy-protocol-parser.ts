// An independent PROXY protocol v2 parser, written from HAProxy's proxy-protocol.txt (§2.2 and §2.2.x),
// for tests that must check what the sidecar sends without trusting its own encoder. Strict: every length
// must add up exactly, or it throws.

/** §2.2: the 12-byte signature that starts every v2 header. */
export const PP2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');

export const PP2_CMD_LOCAL = 0x0;
export const PP2_CMD_PROXY = 0x1;
export const PP2_AF_INET = 0x1;
export const PP2_AF_INET6 = 0x2;
export const PP2_TRANSPORT_STREAM = 0x1;

/** §2.2.5: PP2_TYPE_SSL, its client bits, and the sub-type carrying the TLS version. */
export const PP2_TYPE_SSL = 0x20;
export const PP2_CLIENT_SSL = 0x01;
export const PP2_CLIENT_CERT_CONN = 0x02;
export const PP2_CLIENT_CERT_SESS = 0x04;
export const PP2_SUBTYPE_SSL_VERSION = 0x21;

export interface Tlv {
  type: number;
  value: Buffer;
}

export interface ParsedProxyHeader {
  /** The 13th byte, whole (0x21 for version 2, command PROXY). */
  verCmd: number;
  version: number;
  command: number;
  /** The 14th byte, whole (0x11 TCP over IPv4, 0x21 TCP over IPv6). */
  family: number;
  addressFamily: number;
  transport: number;
  /** Bytes after the 16-byte fixed part, as the header says. */
  length: number;
  /** Total header size: 16 + length. */
  headerSize: number;
  source?: { address: string; port: number };
  destination?: { address: string; port: number };
  tlvs: Tlv[];
}

export interface ParsedSsl {
  client: number;
  verify: number;
  subTlvs: Tlv[];
}

/** A textual IP address in the form WHATWG URL serialization gives it (RFC 5952 for IPv6). */
export function canonicalIp(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1];
  if (!address.includes(':')) return address;
  return new URL(`http://[${address}]/`).hostname.replace(/^\[|\]$/g, '');
}

function ipv4(bytes: Buffer): string {
  return [...bytes].join('.');
}

function ipv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return canonicalIp(groups.join(':'));
}

/** Type-length-value records filling `data` exactly (§2.2.x: type, length high byte, length low byte, value). */
export function parseTlvs(data: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let at = 0;
  while (at < data.length) {
    if (data.length - at < 3) throw new Error(`truncated TLV header at offset ${at}`);
    const type = data[at];
    const length = (data[at + 1] << 8) | data[at + 2];
    if (at + 3 + length > data.length)
      throw new Error(`TLV 0x${type.toString(16)} claims ${length} bytes; ${data.length - at - 3} remain`);
    out.push({ type, value: Buffer.from(data.subarray(at + 3, at + 3 + length)) });
    at += 3 + length;
  }
  return out;
}

/** §2.2.5: struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; } */
export function parseSslTlv(value: Buffer): ParsedSsl {
  if (value.length < 5) throw new Error(`PP2_TYPE_SSL value of ${value.length} bytes; at least 5 expected`);
  return {
    client: value[0],
    verify: ((value[1] << 24) >>> 0) + (value[2] << 16) + (value[3] << 8) + value[4],
    subTlvs: parseTlvs(value.subarray(5)),
  };
}

/**
 * Parses a v2 header at the start of `data`. Returns undefined while more bytes are needed, else the
 * header and the bytes after it (the relayed payload). Throws on anything that is not a valid v2 header.
 */
export function parseProxyV2(data: Buffer): { header: ParsedProxyHeader; rest: Buffer } | undefined {
  const prefix = Math.min(data.length, PP2_SIGNATURE.length);
  if (!data.subarray(0, prefix).equals(PP2_SIGNATURE.subarray(0, prefix)))
    throw new Error(`no PROXY v2 signature: ${data.subarray(0, 16).toString('hex')}`);
  if (data.length < 16) return undefined;
  const verCmd = data[12];
  const family = data[13];
  const length = (data[14] << 8) | data[15];
  const headerSize = 16 + length;
  if (data.length < headerSize) return undefined;
  const version = verCmd >> 4;
  const command = verCmd & 0x0f;
  if (version !== 2) throw new Error(`version ${version}; 2 expected`);
  if (command !== PP2_CMD_LOCAL && command !== PP2_CMD_PROXY) throw new Error(`unknown command ${command}`);
  const addressFamily = family >> 4;
  const transport = family & 0x0f;
  const body = data.subarray(16, headerSize);
  let addressBytes = 0;
  let source: ParsedProxyHeader['source'];
  let destination: ParsedProxyHeader['destination'];
  if (addressFamily === PP2_AF_INET) {
    addressBytes = 12;
    if (body.length < addressBytes) throw new Error(`length ${length} too short for IPv4 addresses`);
    source = { address: ipv4(body.subarray(0, 4)), port: body.readUInt16BE(8) };
    destination = { address: ipv4(body.subarray(4, 8)), port: body.readUInt16BE(10) };
  } else if (addressFamily === PP2_AF_INET6) {
    addressBytes = 36;
    if (body.length < addressBytes) throw new Error(`length ${length} too short for IPv6 addresses`);
    source = { address: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32) };
    destination = { address: ipv6(body.subarray(16, 32)), port: body.readUInt16BE(34) };
  } else if (addressFamily === 0x3) {
    addressBytes = 216;
    if (body.length < addressBytes) throw new Error(`length ${length} too short for UNIX addresses`);
  } else if (addressFamily !== 0x0) {
    throw new Error(`unknown address family ${addressFamily}`);
  }
  return {
    header: {
      verCmd,
      version,
      command,
      family,
      addressFamily,
      transport,
      length,
      headerSize,
      source,
      destination,
      tlvs: parseTlvs(body.subarray(addressBytes)),
    },
    rest: Buffer.from(data.subarray(headerSize)),
  };
}
