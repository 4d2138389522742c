/**
 * The authority life cycle as data, and the pure decisions over it: which
 * authorities relying parties trust, which intermediate certificate is
 * served with new SVIDs, when a retired authority stops being needed.
 * Everything here is a function of a snapshot of the store and `now`.
 */
import type { AuthorityKind, AuthorityRecord, AuthorityState } from '../store/store.js';

export const AUTHORITY_KINDS: readonly AuthorityKind[] = ['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host'];

export function isAuthorityKind(v: string): v is AuthorityKind {
  return (AUTHORITY_KINDS as readonly string[]).includes(v);
}

/** An authority with its trust bookkeeping (times in seconds since the epoch). */
export interface LifecycleAuthority extends AuthorityRecord {
  /** The bundle sequence from which relying parties trust it (intermediates: their root's); null when never published. */
  trustedSinceSeq: number | null;
  retiredAt: number | null;
  /** Retired intermediates and SSH CAs: their last credential expires by then. */
  trustUntil: number | null;
  /** When it left trust (revoked, or retired and no longer needed); null while trusted. */
  untrustedAt: number | null;
}

/** An intermediate's certificate signed by a root other than its parent (root rotation). */
export interface CrossCert {
  subjectId: string;
  issuerId: string;
  der: Buffer;
  notAfter: number;
  createdAt: number;
}

export interface LifecycleSnapshot {
  authorities: LifecycleAuthority[];
  crossCerts: CrossCert[];
  bundleSequence: number;
}

/** States whose public part relying parties keep trusting (until it leaves trust). */
const TRUSTED_STATES: ReadonlySet<AuthorityState> = new Set(['prepared', 'active', 'retired', 'tainted']);

/**
 * Whether an authority is in the trust data now: roots in the X.509
 * bundle, SSH CA keys in the SSH trust files. Tainted authorities stay
 * trusted until revoked, so what they signed keeps working while it is
 * being replaced. Intermediates are trusted through their root.
 */
export function isTrusted(a: LifecycleAuthority, all?: readonly LifecycleAuthority[]): boolean {
  if (!TRUSTED_STATES.has(a.state) || a.untrustedAt !== null) return false;
  if (a.kind !== 'x509-intermediate' || !all) return true;
  const root = all.find((r) => r.id === a.parentId);
  return root !== undefined && isTrusted(root);
}

/** The active authority of a kind, or undefined. */
export function activeOf(s: LifecycleSnapshot, kind: AuthorityKind): LifecycleAuthority | undefined {
  return s.authorities.find((a) => a.kind === kind && a.state === 'active');
}

/** Prepared authorities of a kind (intermediates: optionally only under `parentId`). */
export function preparedOf(s: LifecycleSnapshot, kind: AuthorityKind, parentId?: string): LifecycleAuthority[] {
  return s.authorities.filter((a) => a.kind === kind && a.state === 'prepared' && (parentId === undefined || a.parentId === parentId));
}

/** Trusted authorities of a kind, oldest first: the bundle (roots) or the SSH trust data. */
export function trustedOf(s: LifecycleSnapshot, kind: AuthorityKind): LifecycleAuthority[] {
  return s.authorities
    .filter((a) => a.kind === kind && isTrusted(a, s.authorities))
    // Stable: ties keep the snapshot's creation order.
    .sort((a, b) => a.notBefore - b.notBefore);
}

/** What new SVIDs are issued with. */
export interface ServedIntermediate {
  intermediate: LifecycleAuthority;
  /** The intermediate certificate sent with each SVID (the direct one, or the cross-signed one). */
  certDer: Buffer;
  /** The root that certificate chains to. */
  rootId: string;
  /** Seconds: SVIDs never outlive the served certificate. */
  notAfter: number;
}

/**
 * The active intermediate and the certificate served with it. While the
 * previous root is retired but still trusted (not tainted, not revoked),
 * the intermediate goes out cross-signed by that root, so that a peer that
 * still trusts only the previous root (an agent that was offline during
 * the rotation) validates new SVIDs and can reach the CA to learn the new
 * bundle. Every peer that has the new bundle trusts the previous root too
 * for as long as it is retired. Otherwise the intermediate goes out as
 * signed by its own root.
 */
export function servedIntermediate(s: LifecycleSnapshot, nowSeconds: number): ServedIntermediate | undefined {
  const inter = activeOf(s, 'x509-intermediate');
  if (!inter || inter.parentId === null) return undefined;
  for (const c of s.crossCerts) {
    if (c.subjectId !== inter.id || c.notAfter <= nowSeconds) continue;
    const issuer = s.authorities.find((a) => a.id === c.issuerId);
    if (issuer && issuer.state === 'retired' && isTrusted(issuer)) {
      return { intermediate: inter, certDer: c.der, rootId: issuer.id, notAfter: Math.min(c.notAfter, inter.notAfter) };
    }
  }
  return { intermediate: inter, certDer: inter.publicDer, rootId: inter.parentId, notAfter: inter.notAfter };
}

/**
 * Until when a trusted, non-active authority is still needed (seconds):
 * - an intermediate: its notAfter while prepared or tainted, its trustUntil once retired;
 * - a root: the latest end of the intermediates it signed or cross-signed;
 * - an SSH CA: its trustUntil once retired.
 * Null means "indefinitely" (prepared, active or tainted roots and SSH CAs).
 */
export function neededUntil(s: LifecycleSnapshot, a: LifecycleAuthority): number | null {
  if (a.state === 'active' || a.state === 'prepared' || a.state === 'tainted') {
    return a.kind === 'x509-intermediate' ? a.notAfter : null;
  }
  if (a.state !== 'retired') return 0;
  if (a.kind !== 'x509-root') return Math.min(a.trustUntil ?? a.notAfter, a.notAfter);
  let end = 0;
  for (const i of s.authorities) {
    if (i.kind !== 'x509-intermediate' || i.parentId !== a.id || !isTrusted(i)) continue;
    end = Math.max(end, neededUntil(s, i) ?? i.notAfter);
  }
  for (const c of s.crossCerts) {
    if (c.issuerId !== a.id) continue;
    const i = s.authorities.find((x) => x.id === c.subjectId);
    if (i && isTrusted(i)) end = Math.max(end, Math.min(c.notAfter, neededUntil(s, i) ?? i.notAfter));
  }
  return Math.min(end, a.notAfter);
}

/** Retired authorities still in trust whose last credential has expired at `nowSeconds`. */
export function expiredRetirees(s: LifecycleSnapshot, nowSeconds: number): LifecycleAuthority[] {
  return s.authorities.filter((a) => {
    if (a.state !== 'retired' || a.untrustedAt !== null) return false;
    const end = neededUntil(s, a);
    return end !== null && end <= nowSeconds;
  });
}

