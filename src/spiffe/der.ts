// A strict reader of DER (X.690 §10), only as much of it as an X.509 certificate's SPIFFE facts need: one-byte
// tags, definite lengths in their shortest form, every value inside its parent and nothing after it. What DER
// forbids and a BER reader would accept (indefinite or padded lengths, a BOOLEAN other than 00/FF, a padded OID
// arc, a BIT STRING with set padding bits, a time that is not RFC 5280's form) is refused, as Go's crypto/x509
// (SPIRE, go-spiffe) refuses it: the same certificate never means one thing to a peer and another to us.
// Errors are DerError; certificate.ts turns them into ERR_CERT_PARSE with the file or peer it came from.

export class DerError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} at byte ${offset}`);
    this.name = 'DerError';
  }
}

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
} as const;

/** One value: its tag and where its contents are. */
export interface Tlv {
  readonly tag: number;
  /** Offset of the first content byte. */
  readonly start: number;
  /** Offset just past the last content byte. */
  readonly end: number;
}

/** Reads the values between two offsets of `bytes`, one after the other. */
export class DerReader {
  private pos: number;

  constructor(
    readonly bytes: Uint8Array,
    start = 0,
    readonly end = bytes.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** The tag of the next value, or undefined at the end. */
  peek(): number | undefined {
    return this.done ? undefined : this.bytes[this.pos];
  }

  /** The next value, whatever its tag. */
  next(): Tlv {
    const { bytes, end } = this;
    const at = this.pos;
    if (at >= end) throw new DerError('a value was expected', at);
    const tag = bytes[at];
    // High tag numbers (0x1f) are a multi-byte form no certificate field we read uses.
    if ((tag & 0x1f) === 0x1f) throw new DerError(`unsupported tag 0x${tag.toString(16)}`, at);
    if (at + 1 >= end) throw new DerError('truncated length', at + 1);
    const first = bytes[at + 1];
    let length = first;
    let start = at + 2;
    if (first & 0x80) {
      const count = first & 0x7f;
      if (count === 0) throw new DerError('indefinite length (BER, not DER)', at + 1);
      if (count > 4) throw new DerError('length too large', at + 1);
      if (start + count > end) throw new DerError('truncated length', at + 1);
      if (bytes[start] === 0) throw new DerError('length with leading zero bytes (not DER)', at + 1);
      length = 0;
      for (let i = 0; i < count; i++) length = length * 256 + bytes[start + i];
      if (length < 0x80) throw new DerError('long-form length under 128 (not DER)', at + 1);
      start += count;
    }
    if (length > end - start) throw new DerError('value runs past its container', at);
    this.pos = start + length;
    return { tag, start, end: start + length };
  }

  /** The next value, which must have this tag. */
  expect(tag: number, what: string): Tlv {
    const at = this.pos;
    const tlv = this.next();
    if (tlv.tag !== tag) {
      throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${tlv.tag.toString(16)}`, at);
    }
    return tlv;
  }

  /** The next value if it has this tag, else nothing (an OPTIONAL or DEFAULT field left out). */
  optional(tag: number): Tlv | undefined {
    return this.peek() === tag ? this.next() : undefined;
  }

  /** A reader over the contents of a constructed value. */
  inside(tlv: Tlv): DerReader {
    return new DerReader(this.bytes, tlv.start, tlv.end);
  }

  /** The contents of a SEQUENCE (or other constructed value with this tag), as a reader. */
  enter(tag: number, what: string): DerReader {
    return this.inside(this.expect(tag, what));
  }

  /** Nothing may follow the values read. */
  finish(what: string): void {
    if (!this.done) throw new DerError(`unexpected bytes after ${what}`, this.pos);
  }

  bytesOf(tlv: Tlv): Uint8Array {
    return this.bytes.subarray(tlv.start, tlv.end);
  }

  boolean(tlv: Tlv, what: string): boolean {
    const v = tlv.end - tlv.start === 1 ? this.bytes[tlv.start] : -1;
    if (v !== 0x00 && v !== 0xff) throw new DerError(`${what}: a DER BOOLEAN is one byte, 00 or FF`, tlv.start);
    return v === 0xff;
  }

  /** A non-negative INTEGER small enough for a number (a path length), in DER's shortest form. */
  smallUnsigned(tlv: Tlv, what: string): number {
    const { bytes } = this;
    const length = tlv.end - tlv.start;
    if (length === 0) throw new DerError(`${what}: empty INTEGER`, tlv.start);
    if (bytes[tlv.start] & 0x80) throw new DerError(`${what}: negative`, tlv.start);
    if (length > 1 && bytes[tlv.start] === 0 && !(bytes[tlv.start + 1] & 0x80)) {
      throw new DerError(`${what}: INTEGER with a leading zero byte (not DER)`, tlv.start);
    }
    if (length > 6) throw new DerError(`${what}: too large`, tlv.start);
    let v = 0;
    for (let i = tlv.start; i < tlv.end; i++) v = v * 256 + bytes[i];
    return v;
  }

  /** An OBJECT IDENTIFIER in dotted form ("2.5.29.17"). */
  oid(tlv: Tlv, what: string): string {
    const { bytes } = this;
    if (tlv.end === tlv.start) throw new DerError(`${what}: empty OBJECT IDENTIFIER`, tlv.start);
    const arcs: string[] = [];
    let i = tlv.start;
    while (i < tlv.end) {
      if (bytes[i] === 0x80) throw new DerError(`${what}: OID arc with a leading 0x80 (not DER)`, i);
      let v = 0n;
      let small = 0;
      let big = false;
      for (;;) {
        if (i >= tlv.end) throw new DerError(`${what}: truncated OID arc`, i);
        const b = bytes[i++];
        if (!big && small >= 2 ** 45) {
          big = true;
          v = BigInt(small);
        }
        if (big) v = (v << 7n) | BigInt(b & 0x7f);
        else small = small * 128 + (b & 0x7f);
        if (!(b & 0x80)) break;
      }
      if (arcs.length === 0) {
        // The first subidentifier holds two arcs: 40 * X + Y, X in 0..2.
        const first = big ? v : BigInt(small);
        const x = first < 40n ? 0n : first < 80n ? 1n : 2n;
        arcs.push(String(x), String(first - 40n * x));
      } else arcs.push(big ? String(v) : String(small));
    }
    return arcs.join('.');
  }

  /** A named-bit BIT STRING as a number: bit 0 (the first byte's top bit) is 1, bit 1 is 2... */
  namedBits(tlv: Tlv, what: string, maxBytes: number): number {
    const { bytes } = this;
    const length = tlv.end - tlv.start;
    if (length === 0) throw new DerError(`${what}: BIT STRING without its unused-bits byte`, tlv.start);
    const unused = bytes[tlv.start];
    if (unused > 7 || (length === 1 && unused !== 0)) throw new DerError(`${what}: bad unused-bits count`, tlv.start);
    if (length - 1 > maxBytes) throw new DerError(`${what}: BIT STRING longer than ${maxBytes} bytes`, tlv.start);
    if (length > 1 && bytes[tlv.end - 1] & ((1 << unused) - 1)) {
      throw new DerError(`${what}: BIT STRING padding bits set (not DER)`, tlv.end - 1);
    }
    let v = 0;
    for (let i = 0; i < length - 1; i++) {
      const b = bytes[tlv.start + 1 + i];
      for (let bit = 0; bit < 8; bit++) if (b & (0x80 >> bit)) v += 2 ** (i * 8 + bit);
    }
    return v;
  }

  /** An IA5String (ASCII) value: a DNS name or URI of a GeneralName. */
  ia5(tlv: Tlv, what: string): string {
    const { bytes } = this;
    for (let i = tlv.start; i < tlv.end; i++) {
      if (bytes[i] > 0x7f) throw new DerError(`${what}: not an IA5String (a byte over 0x7f)`, i);
    }
    return Buffer.from(bytes.buffer, bytes.byteOffset + tlv.start, tlv.end - tlv.start).toString('latin1');
  }

  /** A certificate validity time: UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 §4.1.2.5). */
  time(tlv: Tlv, what: string): Date {
    const { bytes } = this;
    const utc = tlv.tag === Tag.UTC_TIME;
    if (!utc && tlv.tag !== Tag.GENERALIZED_TIME)
      throw new DerError(`${what}: not a UTCTime or GeneralizedTime`, tlv.start);
    const digits = utc ? 12 : 14;
    if (tlv.end - tlv.start !== digits + 1 || bytes[tlv.end - 1] !== 0x5a /* Z */) {
      throw new DerError(`${what}: not RFC 5280's ${utc ? 'YYMMDDHHMMSSZ' : 'YYYYMMDDHHMMSSZ'}`, tlv.start);
    }
    const n: number[] = [];
    for (let i = tlv.start; i < tlv.end - 1; i += 2) {
      const hi = bytes[i] - 0x30;
      const lo = bytes[i + 1] - 0x30;
      if (hi < 0 || hi > 9 || lo < 0 || lo > 9) throw new DerError(`${what}: a non-digit in the time`, i);
      n.push(hi * 10 + lo);
    }
    // UTCTime years 50-99 are 1950-1999 (RFC 5280).
    const [year, rest] = utc ? [n[0] >= 50 ? 1900 + n[0] : 2000 + n[0], n.slice(1)] : [n[0] * 100 + n[1], n.slice(2)];
    const [month, day, hour, minute, second] = rest;
    const ms = Date.UTC(year, month - 1, day, hour, minute, second);
    const date = new Date(ms);
    // Out-of-range fields (month 13, 31 April, hour 24, second 60) do not survive the round trip.
    if (
      month < 1 ||
      date.getUTCFullYear() !== year ||
      date.getUTCMonth() !== month - 1 ||
      date.getUTCDate() !== day ||
      date.getUTCHours() !== hour ||
      date.getUTCMinutes() !== minute ||
      date.getUTCSeconds() !== second
    ) {
      throw new DerError(`${what}: not a valid date and time`, tlv.start);
    }
    return date;
  }
}
