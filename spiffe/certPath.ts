import { KeyUsageFlags } from '@peculiar/asn1-x509';
import type { CertFacts } from './certFacts.js';
import { SpiffeError } from './errors.js';
import { nameConstraintViolation } from './nameConstraints.js';

/**
 * RFC 5280 certification path building and validation from a leaf to one of
 * a set of trust anchors. This is the generic X.509 part of X509-SVID
 * validation; the SPIFFE rules on the leaf live in svid.ts.
 *
 * The anchors are full certificates (a SPIFFE bundle holds certificates), and
 * they are held to the same rules as intermediates: in validity at `now`,
 * cA=true, keyCertSign when keyUsage is present, their pathLen and name
 * constraints enforced. That is stricter than RFC 5280's bare name-and-key
 * anchors, and matches what Go's crypto/x509 does for roots.
 */

/** Intermediates an attacker may send are bounded so path search stays cheap. */
export const MAX_INTERMEDIATES = 8;

/** A certificate plus how to name it in messages ("certificate 1", "bundle authority 0"). */
export interface PathCert {
  facts: CertFacts;
  what: string;
}

/**
 * Finds a path leaf -> intermediates... -> anchor that is valid at `now`, and
 * returns it (leaf first, anchor last). A link needs both Node's `checkIssued`
 * (issuer name, key identifiers, issuer keyUsage) and a verifying signature;
 * each complete candidate is then validated and the first valid one wins.
 * Throws SpiffeError('SVID_INVALID') naming the failed check of the first
 * complete candidate, else the first signature that did not verify, else
 * saying that no path reaches an anchor.
 */
export function buildValidPath(leaf: PathCert, intermediates: readonly PathCert[], anchors: readonly PathCert[], now: Date): PathCert[] {
  const search: Search = { intermediates, anchors, badSignatures: [], candidates: 0 };
  let firstFailure: string | undefined;
  for (const path of candidatePaths([leaf], search)) {
    const failure = pathFailure(path, now);
    if (failure === undefined) return path;
    firstFailure ??= failure;
    if (++search.candidates >= MAX_CANDIDATES) break;
  }
  throw new SpiffeError(
    'SVID_INVALID',
    firstFailure ?? search.badSignatures[0] ?? 'no certification path from the leaf to an authority of the bundle (unknown issuer)',
  );
}

/** Complete candidate paths validated before giving up: bounds the work a hostile chain can cause. */
const MAX_CANDIDATES = 16;

interface Search {
  intermediates: readonly PathCert[];
  anchors: readonly PathCert[];
  /** Messages for links whose names matched but whose signature did not verify. */
  badSignatures: string[];
  candidates: number;
}

function* candidatePaths(path: PathCert[], search: Search): Generator<PathCert[]> {
  const current = path[path.length - 1]!;
  // A chain may carry the root itself: reaching a certificate the bundle holds ends the path there.
  const sameAsAnchor = search.anchors.find((a) => a.facts.der.equals(current.facts.der));
  if (sameAsAnchor && path.length > 1) {
    yield [...path.slice(0, -1), sameAsAnchor];
    return;
  }
  for (const anchor of search.anchors) {
    if (links(anchor, current, search)) yield [...path, anchor];
  }
  if (path.length > MAX_INTERMEDIATES) return;
  for (const inter of search.intermediates) {
    if (path.some((p) => p.facts.der.equals(inter.facts.der))) continue;
    if (links(inter, current, search)) yield* candidatePaths([...path, inter], search);
  }
}

function links(issuer: PathCert, subject: PathCert, search: Search): boolean {
  // Node reads `a.checkIssued(b)` as "a was issued by b".
  if (!subject.facts.cert.checkIssued(issuer.facts.cert)) return false;
  if (verifies(subject.facts, issuer.facts)) return true;
  search.badSignatures.push(`the signature of ${subject.what} does not verify with the key of ${issuer.what}`);
  return false;
}

/** The first rule `path` breaks at `now`, or undefined when it is valid. */
function pathFailure(path: readonly PathCert[], now: Date): string | undefined {
  const t = now.getTime();
  for (let i = 0; i < path.length; i++) {
    const { facts, what } = path[i]!;
    if (t < facts.notBefore.getTime()) return `${what} is not valid before ${facts.notBefore.toISOString()}`;
    if (t > facts.notAfter.getTime()) return `${what} expired at ${facts.notAfter.toISOString()}`;
    if (facts.unhandledCritical.length > 0) {
      return `${what} has an unsupported critical extension ${facts.unhandledCritical.join(', ')}`;
    }
    if (i === 0) continue;
    const failure = signerFailure(path, i);
    if (failure !== undefined) return failure;
  }
  return undefined;
}

/** RFC 5280 6.1.4 checks on the signer at `path[i]` (i >= 1). */
function signerFailure(path: readonly PathCert[], i: number): string | undefined {
  const { facts, what } = path[i]!;
  if (!facts.basicConstraints?.cA) return `${what} signs certificates but is not a CA (basicConstraints cA is not true)`;
  if (facts.keyUsage && (facts.keyUsage.flags & KeyUsageFlags.keyCertSign) === 0) {
    return `${what} signs certificates but its keyUsage lacks keyCertSign`;
  }
  const pathLen = facts.basicConstraints.pathLen;
  if (pathLen !== undefined) {
    // Self-issued intermediates do not count against pathLenConstraint (RFC 5280 6.1.4 (l)).
    const below = path.slice(1, i).filter((p) => !p.facts.selfIssued).length;
    if (below > pathLen) {
      return `${what} allows ${pathLen} intermediate CA certificate(s) below it (pathLenConstraint) but the path has ${below}`;
    }
  }
  if (facts.nameConstraints) {
    // The constraints bind every certificate below, except self-issued intermediates (RFC 5280 6.1.3 (b)).
    for (let j = 0; j < i; j++) {
      const below = path[j]!;
      if (j > 0 && below.facts.selfIssued) continue;
      const violation = nameConstraintViolation(facts.nameConstraints, below.facts, what);
      if (violation !== undefined) return `${below.what}: ${violation}`;
    }
  }
  return undefined;
}

function verifies(subject: CertFacts, issuer: CertFacts): boolean {
  try {
    return subject.cert.verify(issuer.cert.publicKey);
  } catch {
    return false;
  }
}
