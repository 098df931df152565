/**
 * The HTTP/2 error codes the proxy sends in RST_STREAM and GOAWAY (RFC 9113 §7).
 *
 * Written out rather than read from `http2.constants`: importing `node:http2` for four numbers would load the
 * whole HTTP/2 implementation (~20 ms) at every start, also for sidecars that never see an HTTP/2 caller. The
 * HTTP/2 server is created on the first `h2` connection instead (inbound.ts).
 */
export const H2_NO_ERROR = 0x0;
export const H2_INTERNAL_ERROR = 0x2;
export const H2_CANCEL = 0x8;
export const H2_ENHANCE_YOUR_CALM = 0xb;
