/**
 * Whether two life-cycle snapshots differ in anything a CA server acts on
 * (several servers on one database: a server reloads only when another
 * one committed something).
 */
import type { AuthorityKind } from '../store/store.js';
import type { LifecycleSnapshot } from '../rotation/model.js';

function fingerprint(s: LifecycleSnapshot): string {
  return JSON.stringify([
    s.bundleSequence,
    s.authorities.map((a) => [a.id, a.state, a.trustedSinceSeq, a.retiredAt, a.trustUntil, a.untrustedAt]),
    s.crossCerts.map((c) => [c.subjectId, c.issuerId, c.notAfter]),
  ]);
}

export function snapshotsDiffer(a: LifecycleSnapshot, b: LifecycleSnapshot): boolean {
  return fingerprint(a) !== fingerprint(b);
}

/** The kind of the first authority that appeared or changed between `before` and `after` (x509-intermediate when none). */
export function changedKind(before: LifecycleSnapshot, after: LifecycleSnapshot): AuthorityKind {
  const old = new Map(before.authorities.map((a) => [a.id, JSON.stringify([a.state, a.retiredAt, a.trustUntil, a.untrustedAt])]));
  const changed = after.authorities.find((a) => old.get(a.id) !== JSON.stringify([a.state, a.retiredAt, a.trustUntil, a.untrustedAt]));
  return changed?.kind ?? 'x509-intermediate';
}
