// The one error type of the sidecar: every failure carries a stable `code` from the union below,
// so callers can `switch (err.code)` and operators can look the code up in the README table.

export type SidecarErrorCode =
  // SPIFFE IDs and allow rules
  | 'ERR_INVALID_SPIFFE_ID'
  | 'ERR_INVALID_TRUST_DOMAIN'
  | 'ERR_INVALID_ALLOW_RULE'
  // certificates and X509-SVID verification
  | 'ERR_CERT_PARSE'
  | 'ERR_SVID_NO_URI_SAN'
  | 'ERR_SVID_MULTIPLE_URI_SANS'
  | 'ERR_SVID_INVALID_ID'
  | 'ERR_SVID_LEAF_IS_CA'
  | 'ERR_SVID_KEY_USAGE'
  | 'ERR_SVID_EXT_KEY_USAGE'
  | 'ERR_CERT_EXPIRED'
  | 'ERR_CERT_NOT_YET_VALID'
  | 'ERR_CERT_UNKNOWN_CRITICAL_EXTENSION'
  | 'ERR_NO_BUNDLE'
  | 'ERR_CHAIN_UNTRUSTED'
  | 'ERR_CHAIN_SIGNING_CERT'
  | 'ERR_CHAIN_PATH_LEN'
  | 'ERR_CHAIN_NAME_CONSTRAINTS'
  // peer rejections that are not certificate rules
  | 'ERR_NO_CLIENT_CERT'
  | 'ERR_INTERNAL'
  | 'ERR_PEER_CHAIN_TOO_LARGE'
  // our own identity (file mode)
  | 'ERR_FILE_READ'
  | 'ERR_KEY_PARSE'
  | 'ERR_KEY_MISMATCH'
  | 'ERR_BUNDLE_INVALID'
  | 'ERR_OWN_SVID_INVALID'
  // JWT mode (JWT-SVIDs and OIDC tokens)
  | 'ERR_JWT_MISSING'
  | 'ERR_JWT_MALFORMED'
  | 'ERR_JWT_ALG'
  | 'ERR_JWT_HEADER'
  | 'ERR_JWT_SUBJECT'
  | 'ERR_JWT_SUBJECT_UNSAFE'
  | 'ERR_JWT_NO_BUNDLE'
  | 'ERR_JWT_KEY_NOT_FOUND'
  | 'ERR_JWT_SIGNATURE'
  | 'ERR_JWT_EXPIRED'
  | 'ERR_JWT_NOT_YET_VALID'
  | 'ERR_JWT_AUDIENCE'
  | 'ERR_JWT_LIFETIME'
  | 'ERR_JWT_CLAIM'
  | 'ERR_JWT_ISSUER_UNKNOWN'
  | 'ERR_JWT_NO_KEYS'
  | 'ERR_JWT_INVALID'
  | 'ERR_JWT_TOKEN_REVIEW'
  | 'ERR_JWT_TOKEN_REVIEW_UNAVAILABLE'
  | 'ERR_JWT_REPLAYED'
  | 'ERR_JWT_REPLAY_CACHE_FULL'
  | 'ERR_JWT_CNF_MISMATCH'
  | 'ERR_JWT_CNF_UNSUPPORTED'
  // authorization policy file and API keys
  | 'ERR_POLICY_INVALID'
  | 'ERR_API_KEYS_INVALID'
  | 'ERR_CREDENTIALS_AMBIGUOUS'
  | 'ERR_API_KEY_MISSING'
  | 'ERR_API_KEY_UNKNOWN'
  | 'ERR_API_KEY_EXPIRED'
  // files the CLI writes (certs init, certs issue)
  | 'ERR_FILE_EXISTS'
  | 'ERR_FILE_WRITE'
  // Kubernetes admission webhook
  | 'ERR_WEBHOOK_CERT'
  // SPIRE mode
  | 'ERR_WORKLOAD_API'
  | 'ERR_WORKLOAD_API_MESSAGE'
  | 'ERR_NO_IDENTITY'
  // configuration and startup
  | 'ERR_CONFIG_INVALID'
  | 'ERR_CONFIG_MISSING'
  | 'ERR_NO_ALLOW_RULE'
  | 'ERR_UNSAFE_UPSTREAM'
  | 'ERR_UNSAFE_LISTEN'
  | 'ERR_LISTEN';

export class SidecarError extends Error {
  readonly code: SidecarErrorCode;

  constructor(code: SidecarErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SidecarError';
    this.code = code;
  }
}

export function isSidecarError(err: unknown): err is SidecarError {
  return err instanceof SidecarError;
}
