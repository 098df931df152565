// X509-SVID verification (X509-SVID.md §4-5, RFC 5280 §6): the leaf rules, then a certification path from
// the leaf to an authority of the bundle of the leaf's OWN trust domain. Certificates the peer sends are
// only ever untrusted intermediates. Every failure throws a SidecarError whose code names the rule.
import type { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { SidecarError } from '../errors.js';
import { type X509BundleSet, x509BundleSetFromPem } from './bundle.js';
import {
  type Certificate,
  EKU_ANY,
  EKU_CLIENT_AUTH,
  EKU_SERVER_AUTH,
  KeyUsage,
  type NameSubtrees,
  parseCertificate,
  parsePemCertificates,
} from './certificate.js';
import { parseSpiffeId, type SpiffeId } from './id.js';

export interface VerifyX509Options {
  /** The time to check validity at; defaults to now. */
  now?: Date;
}

export interface LeafOptions {
  /**
   * Our own SVID must carry a critical keyUsage extension (X509-SVID §4.3 is an issuer rule); a peer's
   * may omit it, which RFC 5280 reads as "no restriction".
   */
  requireKeyUsage?: boolean;
}

/** How deep a path may be (leaf + intermediates + root) and how many signatures one search may check. */
const MAX_PATH_LENGTH = 8;
const MAX_SIGNATURE_CHECKS = 32;

function fail(code: ConstructorParameters<typeof SidecarError>[0], message: string): never {
  throw new SidecarError(code, message);
}

function describe(cert: Certificate, index: number): string {
  return index === 0 ? 'leaf certificate' : `certificate ${index + 1} of the chain (serial ${cert.serialNumber})`;
}

/** Applies the SPIFFE leaf rules (X509-SVID §4.1, §4.3, §5.2) and returns the leaf's SPIFFE ID. */
export function checkLeafSvid(leaf: Certificate, options: LeafOptions = {}): SpiffeId {
  if (leaf.extensionProblems.length > 0) {
    fail('ERR_CERT_UNKNOWN_CRITICAL_EXTENSION', `leaf certificate: ${leaf.extensionProblems.join('; ')}`);
  }
  if (leaf.uris.length === 0) fail('ERR_SVID_NO_URI_SAN', 'certificate contains no URI SAN, so it is not an X509-SVID');
  if (leaf.uris.length > 1) {
    fail(
      'ERR_SVID_MULTIPLE_URI_SANS',
      `certificate contains more than one URI SAN (${leaf.uris.length}); an X509-SVID has exactly one`,
    );
  }
  let id: SpiffeId;
  try {
    id = parseSpiffeId(leaf.uris[0]);
  } catch (err) {
    throw new SidecarError('ERR_SVID_INVALID_ID', `leaf URI SAN is not a SPIFFE ID: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (id.path === '') {
    fail('ERR_SVID_INVALID_ID', `leaf SPIFFE ID "${id}" has no path; a workload SVID needs one (spiffe://td/workload)`);
  }
  if (leaf.isCA) fail('ERR_SVID_LEAF_IS_CA', 'leaf certificate with CA flag set to true');
  if (leaf.keyUsage === undefined) {
    if (options.requireKeyUsage) fail('ERR_SVID_KEY_USAGE', 'leaf certificate has no keyUsage extension');
  } else {
    if (leaf.keyUsage & KeyUsage.keyCertSign)
      fail('ERR_SVID_KEY_USAGE', "leaf certificate key usage must not include 'keyCertSign'");
    if (leaf.keyUsage & KeyUsage.cRLSign)
      fail('ERR_SVID_KEY_USAGE', "leaf certificate key usage must not include 'cRLSign'");
    if (!(leaf.keyUsage & KeyUsage.digitalSignature)) {
      fail('ERR_SVID_KEY_USAGE', "leaf certificate key usage must have 'digitalSignature'");
    }
    if (options.requireKeyUsage && !leaf.keyUsageCritical) {
      fail('ERR_SVID_KEY_USAGE', 'leaf certificate keyUsage extension must be marked critical');
    }
  }
  const eku = leaf.extKeyUsage;
  if (
    eku !== undefined &&
    !eku.includes(EKU_ANY) &&
    !(eku.includes(EKU_SERVER_AUTH) && eku.includes(EKU_CLIENT_AUTH))
  ) {
    fail('ERR_SVID_EXT_KEY_USAGE', 'leaf certificate extended key usage must include both serverAuth and clientAuth');
  }
  return id;
}

/**
 * Finds a path [leaf, ...intermediates, authority] by depth-first search over OpenSSL's view of the
 * certificates: names and key identifiers first (X509_check_issued, cheap), then the signature. Only
 * signature checks count against the budget. Undefined when there is no path.
 */
function buildPath(
  leaf: NodeX509Certificate,
  intermediates: readonly NodeX509Certificate[],
  authorities: readonly Certificate[],
): { nodes: NodeX509Certificate[]; authority: Certificate } | undefined {
  let budget = MAX_SIGNATURE_CHECKS;
  const nodes = [leaf];
  const issued = (child: NodeX509Certificate, parent: NodeX509Certificate) =>
    child.checkIssued(parent) && budget-- > 0 && child.verify(parent.publicKey);
  const extend = (current: NodeX509Certificate): Certificate | undefined => {
    const authority = authorities.find((a) => issued(current, a.node));
    if (authority) return authority;
    if (nodes.length + 1 >= MAX_PATH_LENGTH) return undefined;
    for (const candidate of intermediates) {
      if (nodes.includes(candidate) || !issued(current, candidate)) continue;
      nodes.push(candidate);
      const found = extend(candidate);
      if (found) return found;
      nodes.pop();
    }
    return undefined;
  };
  const authority = extend(leaf);
  return authority && { nodes, authority };
}

function uriHost(uri: string): string | undefined {
  const authority = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(uri)?.[1];
  if (authority === undefined) return undefined;
  const host = authority.slice(authority.lastIndexOf('@') + 1).replace(/:\d*$/, '');
  return host.length > 0 ? host.toLowerCase() : undefined;
}

/**
 * RFC 5280 §4.2.1.10: ".example.org" matches subdomains only; "example.org" matches the host (URI) or the domain
 * and its subdomains (DNS). An empty DNS constraint matches every DNS name ("adding zero or more labels to the
 * left-hand side"; OpenSSL and Go read it so): excluded, it excludes them all.
 */
function hostMatches(host: string, constraint: string, dns: boolean): boolean {
  const c = constraint.toLowerCase();
  if (dns && c.length === 0) return true;
  if (c.startsWith('.')) return host.endsWith(c);
  return host === c || (dns && host.endsWith(`.${c}`));
}

function checkNames(
  cert: Certificate,
  index: number,
  constraints: { permitted: NameSubtrees; excluded: NameSubtrees },
) {
  const { permitted, excluded } = constraints;
  if (permitted.unsupported.length > 0 || excluded.unsupported.length > 0) {
    fail(
      'ERR_CHAIN_NAME_CONSTRAINTS',
      `name constraints of type ${[...permitted.unsupported, ...excluded.unsupported].join(', ')} are not supported (only URI and DNS)`,
    );
  }
  const check = (names: readonly string[], kind: 'URI' | 'DNS', allow: string[], deny: string[]) => {
    for (const name of names) {
      const host = kind === 'URI' ? uriHost(name) : name.toLowerCase();
      const dns = kind === 'DNS';
      if (host === undefined || (allow.length > 0 && !allow.some((c) => hostMatches(host, c, dns)))) {
        fail(
          'ERR_CHAIN_NAME_CONSTRAINTS',
          `${describe(cert, index)}: ${kind} name "${name}" is not permitted by the issuer's name constraints`,
        );
      }
      if (deny.some((c) => hostMatches(host, c, dns))) {
        fail(
          'ERR_CHAIN_NAME_CONSTRAINTS',
          `${describe(cert, index)}: ${kind} name "${name}" is excluded by the issuer's name constraints`,
        );
      }
    }
  };
  check(cert.uris, 'URI', permitted.uris, excluded.uris);
  check(cert.dnsNames, 'DNS', permitted.dnsNames, excluded.dnsNames);
}

/** Self-issued: subject and issuer names are the same (RFC 5280 §6.1); such CAs do not count toward pathLen. */
function isSelfIssued(cert: Certificate): boolean {
  return cert.node.checkIssued(cert.node);
}

/** RFC 5280 §6.1.3-6.1.4 on a built path: validity, CA flags, key usage, path length, name constraints. */
function checkPath(path: readonly Certificate[], now: Date): void {
  path.forEach((cert, i) => {
    if (cert.extensionProblems.length > 0) {
      fail('ERR_CERT_UNKNOWN_CRITICAL_EXTENSION', `${describe(cert, i)}: ${cert.extensionProblems.join('; ')}`);
    }
    if (now < cert.notBefore) {
      fail('ERR_CERT_NOT_YET_VALID', `${describe(cert, i)} is not valid before ${cert.notBefore.toISOString()}`);
    }
    if (now > cert.notAfter) {
      fail('ERR_CERT_EXPIRED', `${describe(cert, i)} has expired (not after ${cert.notAfter.toISOString()})`);
    }
    if (i === 0) return;
    if (!cert.isCA)
      fail('ERR_CHAIN_SIGNING_CERT', `${describe(cert, i)}: signing certificate must have CA flag set to true`);
    if (cert.keyUsage !== undefined && !(cert.keyUsage & KeyUsage.keyCertSign)) {
      fail('ERR_CHAIN_SIGNING_CERT', `${describe(cert, i)}: signing certificate must have 'keyCertSign' key usage`);
    }
    if (cert.pathLength !== undefined) {
      const below = path.slice(1, i).filter((c) => !isSelfIssued(c)).length;
      if (below > cert.pathLength) {
        fail(
          'ERR_CHAIN_PATH_LEN',
          `${describe(cert, i)}: path length constraint ${cert.pathLength} exceeded (${below} CAs below it)`,
        );
      }
    }
    if (cert.nameConstraints) {
      for (let j = 0; j < i; j++) checkNames(path[j], j, cert.nameConstraints);
    }
  });
}

export interface VerifiedX509Svid {
  id: SpiffeId;
  /** The verified path: leaf, intermediates, and the authority it ends at. */
  path: readonly Certificate[];
}

function verifyPath(
  leaf: Certificate,
  intermediates: readonly NodeX509Certificate[],
  parse: (node: NodeX509Certificate, index: number) => Certificate,
  bundles: X509BundleSet,
  options: VerifyX509Options,
): VerifiedX509Svid {
  const id = checkLeafSvid(leaf);
  const bundle = bundles.get(id.trustDomain);
  if (!bundle) fail('ERR_NO_BUNDLE', `no X.509 bundle found for trust domain: "${id.trustDomain}"`);
  if (bundle.authorities.length === 0) {
    fail('ERR_NO_BUNDLE', `the X.509 bundle of trust domain "${id.trustDomain}" has no authorities`);
  }
  const found = buildPath(leaf.node, intermediates, bundle.authorities);
  if (!found) {
    fail(
      'ERR_CHAIN_UNTRUSTED',
      `certificate of "${id}" does not chain to an authority of its trust domain "${id.trustDomain}"`,
    );
  }
  // Only certificates on the path are decoded: extra certificates a peer sends cost no parsing.
  const path = [leaf, ...found.nodes.slice(1).map((node, i) => parse(node, i + 1)), found.authority];
  checkPath(path, options.now ?? new Date());
  return { id, path };
}

/**
 * Verifies a parsed chain (leaf first, then intermediates) against the bundle of the leaf's trust
 * domain only.
 */
export function verifyX509SvidChain(
  chain: readonly Certificate[],
  bundles: X509BundleSet,
  options: VerifyX509Options = {},
): VerifiedX509Svid {
  if (chain.length === 0) fail('ERR_SVID_NO_URI_SAN', 'no certificate was presented');
  const [leaf, ...rest] = chain;
  const byNode = new Map(rest.map((c) => [c.node, c]));
  return verifyPath(
    leaf,
    rest.map((c) => c.node),
    (node) => byNode.get(node)!,
    bundles,
    options,
  );
}

/** Verifies the certificates a TLS peer presented (leaf first), as OpenSSL parsed them. */
export function verifyX509SvidPeer(
  certs: readonly NodeX509Certificate[],
  bundles: X509BundleSet,
  options: VerifyX509Options = {},
): VerifiedX509Svid {
  if (certs.length === 0) fail('ERR_SVID_NO_URI_SAN', 'no certificate was presented');
  const [leaf, ...intermediates] = certs;
  return verifyPath(
    parseCertificate(leaf.raw, 'peer leaf certificate', leaf),
    intermediates,
    (node, i) => parseCertificate(node.raw, `peer certificate ${i + 1}`, node),
    bundles,
    options,
  );
}

/**
 * Public API: verifies a PEM chain (leaf first) against PEM bundles keyed by trust domain and returns
 * the peer's SPIFFE ID. Throws a SidecarError on any failure.
 */
export function verifyX509Svid(
  chainPem: string,
  bundles: Record<string, string>,
  options: VerifyX509Options = {},
): SpiffeId {
  const chain = parsePemCertificates(chainPem, 'certificate chain');
  return verifyX509SvidChain(chain, x509BundleSetFromPem(bundles), options).id;
}
