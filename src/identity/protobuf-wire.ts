// The protobuf wire format (proto3), only as far as the Workload API's messages need it: every field the
// sidecar reads or writes is length-delimited (string, bytes, message, map entry), so a reader walks the
// fields, hands over the length-delimited ones and skips the rest by their wire type. Strict: a truncated
// field, an over-long varint, field number 0, a group (wire types 3/4, gone in proto3) or an unknown wire
// type throws, and a string must be valid UTF-8 (proto3 requires it). Why not protobufjs through
// proto-loader: building its descriptors costs ~30 ms of startup in SPIRE mode (see workload-api-messages.ts).
import { SidecarError } from '../errors.js';

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

/** Field numbers are 29-bit (1 .. 2^29 - 1). */
const MAX_FIELD_NUMBER = 2 ** 29 - 1;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(what: string, why: string): SidecarError {
  return new SidecarError('ERR_WORKLOAD_API_MESSAGE', `Workload API ${what}: not valid protobuf: ${why}`);
}

/**
 * Calls `visit` with each field in `bytes`, in order: the value of a length-delimited field as a Buffer
 * that shares `bytes`' memory, `undefined` for a field of another wire type (skipped). `what` names the
 * message in errors. Repeated fields arrive once per occurrence; the caller decides (proto3: for a
 * singular field, the last one wins).
 */
export function visitFields(bytes: Buffer, what: string, visit: (field: number, value: Buffer | undefined) => void) {
  let at = 0;
  // A varint of at most `maxBytes` bytes, as a number: used for tags and lengths, which fit 32 bits (and
  // a length must also fit what is left); skipped varint values may take the full 10 bytes of a uint64.
  const varint = (maxBytes: number): number => {
    let value = 0;
    for (let i = 0; i < maxBytes; i++) {
      if (at >= bytes.length) throw malformed(what, `a varint runs past the end at byte ${at}`);
      const byte = bytes[at++];
      if (i < 5) value += (byte & 0x7f) * 2 ** (7 * i);
      // The 10th byte of a uint64 holds its top bit only.
      if (i === 9 && byte > 1) throw malformed(what, `a varint overflows 64 bits at byte ${at - 1}`);
      if ((byte & 0x80) === 0) return value;
    }
    throw malformed(what, `a varint is longer than ${maxBytes} bytes at byte ${at}`);
  };
  while (at < bytes.length) {
    const tag = varint(5);
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === 0 || field > MAX_FIELD_NUMBER) throw malformed(what, `field number ${field} at byte ${at}`);
    switch (wireType) {
      case WIRE_LENGTH_DELIMITED: {
        const length = varint(5);
        if (length > bytes.length - at) throw malformed(what, `field ${field} is ${length} bytes, past the end`);
        visit(field, bytes.subarray(at, at + length));
        at += length;
        break;
      }
      case WIRE_VARINT:
        varint(10);
        visit(field, undefined);
        break;
      case WIRE_FIXED64:
      case WIRE_FIXED32: {
        const size = wireType === WIRE_FIXED64 ? 8 : 4;
        if (size > bytes.length - at) throw malformed(what, `field ${field} runs past the end`);
        at += size;
        visit(field, undefined);
        break;
      }
      default:
        throw malformed(what, `field ${field} has wire type ${wireType} (groups and types 6, 7 are not proto3)`);
    }
  }
}

/** The value of a field the message schema says is length-delimited; any other wire type is malformed. */
export function lengthDelimited(value: Buffer | undefined, what: string, field: number): Buffer {
  if (value === undefined) throw malformed(what, `field ${field} must be length-delimited`);
  return value;
}

/** A proto3 string: UTF-8, and invalid UTF-8 is malformed rather than replaced. */
export function decodeString(value: Buffer | undefined, what: string, field: number): string {
  try {
    return utf8.decode(lengthDelimited(value, what, field));
  } catch (err) {
    if (err instanceof SidecarError) throw err;
    throw malformed(what, `field ${field} is a string but not valid UTF-8`);
  }
}

function varintBytes(value: number): number[] {
  const out: number[] = [];
  while (value > 0x7f) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** One length-delimited field, encoded: tag, length, bytes. */
export function encodeLengthDelimited(field: number, value: Uint8Array): Buffer {
  const head = Buffer.from([...varintBytes(field * 8 + WIRE_LENGTH_DELIMITED), ...varintBytes(value.length)]);
  return Buffer.concat([head, value]);
}
