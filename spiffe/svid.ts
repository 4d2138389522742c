import { KeyUsageFlags, anyExtendedKeyUsage, id_kp_clientAuth, id_kp_serverAuth } from '@peculiar/asn1-x509';
import type { X509Certificate } from 'node:crypto';
import type { X509Bundle } from './bundle.js';
import { readCertFacts } from './certFacts.js';
import type { CertFacts } from './certFacts.js';
import { buildValidPath } from './certPath.js';
import type { PathCert } from './certPath.js';
import { realClock } from './clock.js';
import { SpiffeError } from './errors.js';
import { parseSpiffeId } from './id.js';
import type { SpiffeId } from './id.js';

export { getDnsSans, getUriSans } from './certFacts.js';

/**
 * X509-SVID validation, exact to spiffe/spiffe standards/X509-SVID.md:
 * RFC 5280 path validation to an authority of the trust domain's bundle
 * (certPath.ts), then the leaf rules of sections 3, 4 and 5.2.
 */

/** Longest chain accepted from a peer: leaf plus intermediates. */
export const MAX_CHAIN_LENGTH = 1 + 8;

/** A leaf that passed the SPIFFE leaf rules. */
export interface SvidLeaf {
  spiffeId: SpiffeId;
  leaf: X509Certificate;
  /** DNS SANs, which an X509-SVID may carry besides its one URI SAN. */
  dnsNames: string[];
}

/** A verified X509-SVID. */
export interface VerifiedX509Svid extends SvidLeaf {
  /** The certification path that validated, leaf first, bundle authority last. */
  path: X509Certificate[];
}

/**
 * Checks the SPIFFE leaf rules on one certificate, without path validation
 * or time: exactly one URI SAN holding a valid SPIFFE ID with a non-empty
 * path; a critical SAN extension when the subject is empty; cA=false;
 * keyUsage present and critical, with digitalSignature and without
 * keyCertSign or cRLSign; extKeyUsage, if present, with serverAuth and
 * clientAuth. For a CA checking what it minted, or a peer's leaf before the
 * costlier path work. Throws SpiffeError('SVID_INVALID').
 */
export function parseSvidLeaf(der: Uint8Array): SvidLeaf {
  return checkLeaf(readCertFacts(der, 'leaf'));
}

/**
 * Validates an X509-SVID chain (DER, leaf first, then any intermediates in
 * any order) against `bundle` at `options.now` (default: the real clock).
 * Order of checks: the leaf rules, the leaf's trust domain against the
 * bundle's, then path validation (signatures, validity of every certificate,
 * CA flag, keyCertSign and pathLenConstraint on signers, URI/DNS/directory
 * name constraints, unknown critical extensions). Throws
 * SpiffeError('SVID_INVALID') whose message says which check failed.
 */
export function verifyX509Svid(chain: readonly Uint8Array[], bundle: X509Bundle, options: { now?: Date } = {}): VerifiedX509Svid {
  const now = options.now ?? realClock.now();
  if (chain.length === 0) throw invalid('the certificate chain is empty');
  if (chain.length > MAX_CHAIN_LENGTH) {
    throw invalid(`the certificate chain has ${chain.length} certificates, more than the ${MAX_CHAIN_LENGTH} accepted`);
  }
  const certs: PathCert[] = chain.map((der, i) => ({
    facts: readCertFacts(der, i === 0 ? 'leaf' : `certificate ${i}`),
    what: i === 0 ? 'the leaf' : `certificate ${i} of the chain`,
  }));
  const leaf = checkLeaf(certs[0]!.facts);
  if (leaf.spiffeId.trustDomain !== bundle.trustDomain) {
    throw invalid(
      `the leaf's trust domain '${leaf.spiffeId.trustDomain}' does not match the bundle's trust domain '${bundle.trustDomain}'`,
    );
  }
  const path = buildValidPath(certs[0]!, certs.slice(1), anchorsOf(bundle), now);
  return { ...leaf, path: path.map((p) => p.facts.cert) };
}

function checkLeaf(facts: CertFacts): SvidLeaf {
  const uris = facts.sans.flatMap((n) => (n.uniformResourceIdentifier === undefined ? [] : [n.uniformResourceIdentifier]));
  if (uris.length !== 1) {
    throw invalid(`the leaf has ${uris.length} URI SANs; an X509-SVID must have exactly one`);
  }
  let spiffeId: SpiffeId;
  try {
    spiffeId = parseSpiffeId(uris[0]!);
  } catch (e) {
    throw invalid(`the leaf's URI SAN is not a valid SPIFFE ID: ${(e as Error).message}`, e);
  }
  if (spiffeId.isTrustDomainId) {
    throw invalid(`the leaf's SPIFFE ID '${spiffeId.toString()}' has no path; a leaf must name a workload`);
  }
  if (facts.subjectEmpty && !facts.sanCritical) {
    throw invalid('the leaf has an empty subject, so its subjectAltName extension must be critical');
  }
  if (facts.basicConstraints?.cA) throw invalid('the leaf is a CA certificate (basicConstraints cA=true)');
  const ku = facts.keyUsage;
  if (!ku) throw invalid('the leaf has no keyUsage extension');
  if (!ku.critical) throw invalid('the leaf keyUsage extension is not critical');
  if ((ku.flags & KeyUsageFlags.digitalSignature) === 0) throw invalid('the leaf keyUsage lacks digitalSignature');
  if (ku.flags & KeyUsageFlags.keyCertSign) throw invalid('the leaf keyUsage has keyCertSign');
  if (ku.flags & KeyUsageFlags.cRLSign) throw invalid('the leaf keyUsage has cRLSign');
  const eku = facts.extKeyUsage;
  if (eku && !eku.includes(anyExtendedKeyUsage)) {
    for (const [oid, name] of [[id_kp_serverAuth, 'serverAuth'], [id_kp_clientAuth, 'clientAuth']] as const) {
      if (!eku.includes(oid)) throw invalid(`the leaf extKeyUsage lacks ${name}`);
    }
  }
  const dnsNames = facts.sans.flatMap((n) => (n.dNSName === undefined ? [] : [n.dNSName]));
  return { spiffeId, leaf: facts.cert, dnsNames };
}

// A bundle is immutable, so its authorities are decoded once, not per verification.
const anchorCache = new WeakMap<X509Bundle, PathCert[]>();

function anchorsOf(bundle: X509Bundle): PathCert[] {
  let anchors = anchorCache.get(bundle);
  if (!anchors) {
    anchors = bundle.authorities.map((der, i) => ({
      facts: readCertFacts(der, `bundle authority ${i}`),
      what: `bundle authority ${i} ('${bundle.certificates[i]!.subject.replace(/\n/g, ', ')}')`,
    }));
    anchorCache.set(bundle, anchors);
  }
  return anchors;
}

function invalid(message: string, cause?: unknown): SpiffeError {
  return new SpiffeError('SVID_INVALID', message, cause === undefined ? undefined : { cause });
}
