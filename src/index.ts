// The public library API: re-exports only.
export { type Sidecar, startSidecar } from './app.js';
export { buildConfig, type Config, type RawOptions } from './config.js';
export { isSidecarError, SidecarError, type SidecarErrorCode } from './errors.js';
export { parseSpiffeId, parseTrustDomain, type SpiffeId } from './spiffe/id.js';
export { createAuthorizer } from './spiffe/match.js';
export { type JWK, type JWKS, type VerifiedJwtSvid, type VerifyJwtOptions, verifyJwtSvid } from './spiffe/jwtsvid.js';
export { verifyX509Svid } from './spiffe/x509svid.js';
