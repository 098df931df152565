// The Workload API messages the sidecar's client sends and receives (workload.proto, field numbers from the
// Workload API spec's proto), encoded and decoded with the wire format by hand: the requests are empty or
// strings, the responses strings, bytes, repeated messages and map<string, bytes>. Why not proto-loader on
// this path: loading protobufjs and building proto-loader's descriptors (which grpc-js never reads on a
// client) cost ~30 ms of the ~170 ms SPIRE-mode startup; these ~100 lines cost nothing measurable.
// proto-loader stays the reference: the Workload API servers (`dev workload-api`, the tests') load
// workload.proto with it, and a property test compares both codecs on generated messages.
// Decoding fills proto3 defaults ('' and empty Buffers) for absent fields, like proto-loader's
// `defaults: true`; maps are objects without a prototype, so a key like `__proto__` is a key.
import { decodeString, encodeLengthDelimited, lengthDelimited, visitFields } from './protobuf-wire.js';

export interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

export interface X509SvidResponseMessage {
  svids: X509SvidMessage[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

export interface JwtSvidMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}

export interface JwtSvidResponseMessage {
  svids: JwtSvidMessage[];
}

export interface JwtBundlesResponseMessage {
  bundles: Record<string, Buffer>;
}

const EMPTY: Buffer = Buffer.alloc(0);

/** X509SVIDRequest and JWTBundlesRequest have no fields. */
export function encodeEmptyRequest(): Buffer {
  return EMPTY;
}

/** JWTSVIDRequest { repeated string audience = 1; string spiffe_id = 2; } (proto3: '' is not written). */
export function encodeJwtSvidRequest(request: { audience: string[]; spiffe_id: string }): Buffer {
  const fields = request.audience.map((a) => encodeLengthDelimited(1, Buffer.from(a, 'utf8')));
  if (request.spiffe_id !== '') fields.push(encodeLengthDelimited(2, Buffer.from(request.spiffe_id, 'utf8')));
  return Buffer.concat(fields);
}

/** X509SVID { string spiffe_id = 1; bytes x509_svid = 2; bytes x509_svid_key = 3; bytes bundle = 4; string hint = 5; } */
function decodeX509Svid(bytes: Buffer): X509SvidMessage {
  const what = 'X509SVID';
  const svid: X509SvidMessage = { spiffe_id: '', x509_svid: EMPTY, x509_svid_key: EMPTY, bundle: EMPTY, hint: '' };
  visitFields(bytes, what, (field, value) => {
    if (field === 1) svid.spiffe_id = decodeString(value, what, field);
    else if (field === 2) svid.x509_svid = lengthDelimited(value, what, field);
    else if (field === 3) svid.x509_svid_key = lengthDelimited(value, what, field);
    else if (field === 4) svid.bundle = lengthDelimited(value, what, field);
    else if (field === 5) svid.hint = decodeString(value, what, field);
  });
  return svid;
}

/** A map<string, bytes> entry { string key = 1; bytes value = 2; } into `map` (a repeated key: the last wins). */
function decodeBytesMapEntry(bytes: Buffer, what: string, map: Record<string, Buffer>): void {
  let key = '';
  let value: Buffer = EMPTY;
  visitFields(bytes, what, (field, v) => {
    if (field === 1) key = decodeString(v, what, field);
    else if (field === 2) value = lengthDelimited(v, what, field);
  });
  map[key] = value;
}

/** X509SVIDResponse { repeated X509SVID svids = 1; repeated bytes crl = 2; map<string, bytes> federated_bundles = 3; } */
export function decodeX509SvidResponse(bytes: Buffer): X509SvidResponseMessage {
  const what = 'X509SVIDResponse';
  const message: X509SvidResponseMessage = { svids: [], crl: [], federated_bundles: Object.create(null) };
  visitFields(bytes, what, (field, value) => {
    if (field === 1) message.svids.push(decodeX509Svid(lengthDelimited(value, what, field)));
    else if (field === 2) message.crl.push(lengthDelimited(value, what, field));
    else if (field === 3)
      decodeBytesMapEntry(lengthDelimited(value, what, field), `${what}.federated_bundles`, message.federated_bundles);
  });
  return message;
}

/** JWTBundlesResponse { map<string, bytes> bundles = 1; } */
export function decodeJwtBundlesResponse(bytes: Buffer): JwtBundlesResponseMessage {
  const what = 'JWTBundlesResponse';
  const message: JwtBundlesResponseMessage = { bundles: Object.create(null) };
  visitFields(bytes, what, (field, value) => {
    if (field === 1) decodeBytesMapEntry(lengthDelimited(value, what, field), `${what}.bundles`, message.bundles);
  });
  return message;
}

/** JWTSVID { string spiffe_id = 1; string svid = 2; string hint = 3; } */
function decodeJwtSvid(bytes: Buffer): JwtSvidMessage {
  const what = 'JWTSVID';
  const svid: JwtSvidMessage = { spiffe_id: '', svid: '', hint: '' };
  visitFields(bytes, what, (field, value) => {
    if (field === 1) svid.spiffe_id = decodeString(value, what, field);
    else if (field === 2) svid.svid = decodeString(value, what, field);
    else if (field === 3) svid.hint = decodeString(value, what, field);
  });
  return svid;
}

/** JWTSVIDResponse { repeated JWTSVID svids = 1; } */
export function decodeJwtSvidResponse(bytes: Buffer): JwtSvidResponseMessage {
  const what = 'JWTSVIDResponse';
  const message: JwtSvidResponseMessage = { svids: [] };
  visitFields(bytes, what, (field, value) => {
    if (field === 1) message.svids.push(decodeJwtSvid(lengthDelimited(value, what, field)));
  });
  return message;
}
