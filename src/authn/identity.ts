// The authenticated caller, as every later stage (policy, headers, logs) sees it.
import type { SpiffeId } from '../spiffe/id.js';

export type PeerIdentity =
  /** An X509-SVID verified in the TLS handshake. */
  | {
      readonly method: 'mtls';
      readonly id: SpiffeId;
      /** SHA-256 hex of the leaf DER, for XFCC. */ readonly leafSha256: string;
      /** When the verified chain expires (ms since the epoch): a connection must not outlive it. */
      readonly notAfter?: number;
    }
  /**
   * A JWT-SVID (`jwt-svid`), or a Kubernetes service-account token (`k8s-sa`: its subject maps to a SPIFFE ID,
   * verified by the issuer's JWKS or by TokenReview).
   */
  | {
      readonly method: 'jwt-svid' | 'k8s-sa';
      readonly id: SpiffeId;
      readonly issuer?: string;
      readonly subject: string;
      /** The verified claims set, for policy claim conditions. */
      readonly claims?: Readonly<Record<string, unknown>>;
    }
  /** A token of another OIDC issuer: no SPIFFE ID, only who issued it and for whom. */
  | {
      readonly method: 'oidc';
      readonly id?: undefined;
      readonly issuer: string;
      readonly subject: string;
      readonly claims?: Readonly<Record<string, unknown>>;
    }
  /** A static API key (`--api-keys-file`): the identity name its line binds it to. */
  | {
      readonly method: 'api-key';
      readonly id?: undefined;
      readonly name: string;
      /** Routes the key is limited to, if its line lists any. */
      readonly routes?: readonly KeyRoute[];
    };

/** How a caller authenticated: the word of `x-auth-method`, the audit line's `auth` and the metrics' `auth` label. */
export type AuthMethod = PeerIdentity['method'];

/** Every method, in the order the README lists them. */
export const AUTH_METHODS: readonly AuthMethod[] = ['mtls', 'jwt-svid', 'oidc', 'k8s-sa', 'api-key'];

/** A `--jwt-issuer NAME=…` name: what token callers' `issuer` is, and what policy rules and `--allow-issuer` name. */
export const ISSUER_NAME_FORMAT = /^[a-z0-9][a-z0-9-]*$/;
/** An API key's name (the first field of its line in `--api-keys-file`): what policy rules name. */
export const API_KEY_NAME_FORMAT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** A route an API key may call: a method (or any) and a compiled path glob. */
export interface KeyRoute {
  readonly method: string | '*';
  readonly text: string;
  readonly matches: (path: string) => boolean;
}

/** A rejected caller: `reason` is a bounded code (fit for a metric label), `message` is for the log. */
export interface Rejection {
  readonly reason: string;
  readonly message: string;
}

/**
 * The reason word of the answer a refused caller gets: a 503 says what is missing (`no_keys`: no keys to
 * verify with yet; `token_review_unavailable`: the Kubernetes API server could not review the token), a 401
 * the rejection's own reason.
 */
export function answerReasonOf(rejection: Rejection): string {
  switch (rejection.reason) {
    case 'ERR_JWT_NO_KEYS':
      return 'no_keys';
    case 'ERR_JWT_TOKEN_REVIEW_UNAVAILABLE':
      return 'token_review_unavailable';
    case 'ERR_JWT_REPLAY_CACHE_FULL':
      return 'replay_cache_full';
    default:
      return rejection.reason;
  }
}

/** How the caller appears in the audit log: its SPIFFE ID, or issuer and subject. */
export function describePeer(peer: PeerIdentity): string {
  if (peer.id) return peer.id.toString();
  return peer.method === 'api-key' ? `api-key:${peer.name}` : `${peer.issuer}#${peer.subject}`;
}
