/**
 * What each life-cycle transition changes, decided from a snapshot and
 * `now` without touching anything: the state updates, whether the trust
 * data (bundle sequence) changes, and the journal plan that lets a later
 * rollback undo an activation. Refusals are CaError FAILED_PRECONDITION
 * with a message that says what to do instead.
 */
import { CaError } from '../errors.js';
import type { AuthorityKind } from '../store/store.js';
import type { AuthorityUpdate, JournalEntry, TransitionPlan } from './lifecycle-store.js';
import { activeOf, isTrusted, preparedOf, type LifecycleAuthority, type LifecycleSnapshot } from './model.js';

/** How long what a retiring authority signed may still be valid (seconds). */
export interface RetirePolicy {
  /** The longest SVID lifetime (workload or agent) plus the notBefore backdate. */
  x509LeafSeconds: number;
  sshUserSeconds: number;
  sshHostSeconds: number;
}

export interface ChangeSet {
  updates: AuthorityUpdate[];
  bumpBundle: boolean;
  plan: TransitionPlan;
  /** The authority the journal entry is about. */
  authorityId: string;
  detail: string;
}

/** A retired authority is needed until what it signed up to `nowS` has expired. */
function retire(a: LifecycleAuthority, nowS: number, policy: RetirePolicy): AuthorityUpdate {
  const reach =
    a.kind === 'x509-intermediate' ? policy.x509LeafSeconds : a.kind === 'ssh-user' ? policy.sshUserSeconds : a.kind === 'ssh-host' ? policy.sshHostSeconds : null;
  // Roots: computed from the intermediates they signed (model.ts neededUntil).
  const trustUntil = reach === null ? null : Math.min(a.notAfter, nowS + reach);
  return { id: a.id, state: 'retired', retiredAt: nowS, trustUntil };
}

function activate(a: LifecycleAuthority): AuthorityUpdate {
  return { id: a.id, state: 'active', retiredAt: null, trustUntil: null };
}

/** Activating a prepared authority: the active one of its kind retires (a root brings its intermediate along). */
export function activationChanges(s: LifecycleSnapshot, target: LifecycleAuthority, nowS: number, policy: RetirePolicy): ChangeSet {
  const kind = target.kind;
  if (target.notAfter <= nowS + 60) throw new CaError('FAILED_PRECONDITION', `${kind} ${target.id} expires too soon to be activated`);
  const updates: AuthorityUpdate[] = [];
  const previousIds: string[] = [];
  const activatedIds = [target.id];
  const old = activeOf(s, kind);
  if (kind === 'x509-intermediate') {
    const root = activeOf(s, 'x509-root');
    if (!root || target.parentId !== root.id) {
      throw new CaError('FAILED_PRECONDITION', `intermediate ${target.id} was not signed by the active root: activate its root instead`);
    }
  }
  if (kind === 'x509-root') {
    const inter = preparedOf(s, 'x509-intermediate', target.id)[0];
    if (!inter) throw new CaError('FAILED_PRECONDITION', `root ${target.id} has no prepared intermediate: roll it back and prepare again`);
    const oldInter = activeOf(s, 'x509-intermediate');
    if (oldInter) {
      updates.push(retire(oldInter, nowS, policy));
      previousIds.push(oldInter.id);
    }
    // Intermediates prepared under the retiring root never signed anything.
    for (const p of preparedOf(s, 'x509-intermediate', old?.id)) updates.push({ id: p.id, state: 'retired', retiredAt: nowS, trustUntil: nowS });
    activatedIds.push(inter.id);
  }
  if (old) {
    updates.push(retire(old, nowS, policy));
    previousIds.unshift(old.id);
  }
  updates.push(activate(target));
  if (activatedIds.length > 1) updates.push(activate(s.authorities.find((a) => a.id === activatedIds[1])!));
  const also = activatedIds.length > 1 ? ` with intermediate ${activatedIds[1]}` : '';
  return {
    updates,
    // The trust data does not change: the new authority was published when prepared.
    bumpBundle: false,
    plan: { previousIds, activatedIds },
    authorityId: target.id,
    detail: `activated${also}; retired ${previousIds.join(', ') || 'nothing'}`,
  };
}

/**
 * Rolling back: a prepared authority is withdrawn (revoked, it never
 * signed); otherwise the last activation of the kind is undone while the
 * authorities it retired are still valid and trusted.
 */
export function rollbackChanges(s: LifecycleSnapshot, kind: AuthorityKind, lastActivation: JournalEntry | undefined, nowS: number, policy: RetirePolicy): ChangeSet {
  const rootId = kind === 'x509-intermediate' ? activeOf(s, 'x509-root')?.id : undefined;
  const prepared = preparedOf(s, kind, rootId);
  if (prepared.length > 0) {
    const withdrawn = [...prepared];
    if (kind === 'x509-root') for (const p of prepared) withdrawn.push(...preparedOf(s, 'x509-intermediate', p.id));
    return {
      updates: withdrawn.map((a) => ({ id: a.id, state: 'revoked', untrustedAt: nowS })),
      bumpBundle: kind !== 'x509-intermediate',
      plan: { undone: 'prepare', rolledBackId: prepared[0]!.id, withdrawnIds: withdrawn.map((a) => a.id) },
      authorityId: prepared[0]!.id,
      detail: `prepare undone: withdrew ${withdrawn.map((a) => a.id).join(', ')}`,
    };
  }
  if (!lastActivation || lastActivation.action !== 'activate') {
    throw new CaError('FAILED_PRECONDITION', `nothing to roll back for ${kind}: no prepared authority, and no activation since the last rollback`);
  }
  const activated = (lastActivation.plan.activatedIds ?? []).map((id) => s.authorities.find((a) => a.id === id));
  const previous = (lastActivation.plan.previousIds ?? []).map((id) => s.authorities.find((a) => a.id === id));
  if (activated.some((a) => a?.state !== 'active')) {
    throw new CaError('FAILED_PRECONDITION', `nothing to roll back for ${kind}: the authority activated last is no longer active`);
  }
  if (previous.length === 0) throw new CaError('FAILED_PRECONDITION', `nothing to roll back for ${kind}: the last activation had no predecessor`);
  for (const p of previous) {
    if (!p || p.state !== 'retired' || !isTrusted(p) || p.notAfter <= nowS + 60) {
      const why = !p ? 'is gone' : p.state !== 'retired' ? `is ${p.state}` : !isTrusted(p) ? 'has left trust' : 'has expired or expires within a minute';
      throw new CaError('FAILED_PRECONDITION', `cannot roll back ${kind}: the previous authority ${p?.id ?? ''} ${why}`);
    }
  }
  const back = activated as LifecycleAuthority[];
  const restored = previous as LifecycleAuthority[];
  return {
    updates: [...back.map((a) => retire(a, nowS, policy)), ...restored.map(activate)],
    bumpBundle: false,
    plan: { undone: 'activate', rolledBackId: back[0]!.id, previousIds: back.map((a) => a.id), activatedIds: restored.map((a) => a.id) },
    authorityId: back[0]!.id,
    detail: `activation undone: ${restored.map((a) => a.id).join(', ')} active again; ${back.map((a) => a.id).join(', ')} retired`,
  };
}

/** Tainting: a non-active authority is distrusted; what it signed must be replaced (it stays in trust until revoked). */
export function taintChanges(target: LifecycleAuthority): ChangeSet {
  if (target.state === 'active') {
    throw new CaError('FAILED_PRECONDITION', `${target.kind} ${target.id} is active: prepare and activate a replacement (or roll back) before tainting it`);
  }
  if (target.state === 'tainted' || target.state === 'revoked') {
    throw new CaError('FAILED_PRECONDITION', `${target.kind} ${target.id} is already ${target.state}`);
  }
  return {
    updates: [{ id: target.id, state: 'tainted' }],
    bumpBundle: false,
    plan: { previousState: target.state },
    authorityId: target.id,
    detail: `tainted (was ${target.state}): every credential chained to it is to be replaced now`,
  };
}

/** Revoking: the authority (and, for a root, the intermediates it signed) leaves trust. */
export function revokeChanges(s: LifecycleSnapshot, target: LifecycleAuthority, nowS: number): ChangeSet {
  if (target.state === 'active') throw new CaError('FAILED_PRECONDITION', `${target.kind} ${target.id} is active: activate a replacement before revoking it`);
  if (target.state === 'revoked') throw new CaError('FAILED_PRECONDITION', `${target.kind} ${target.id} is already revoked`);
  const wasTrusted = isTrusted(target);
  const updates: AuthorityUpdate[] = [{ id: target.id, state: 'revoked', untrustedAt: target.untrustedAt ?? nowS }];
  const cascaded: string[] = [];
  if (target.kind === 'x509-root') {
    for (const i of s.authorities) {
      if (i.kind === 'x509-intermediate' && i.parentId === target.id && i.state !== 'revoked' && i.state !== 'active') {
        updates.push({ id: i.id, state: 'revoked', untrustedAt: i.untrustedAt ?? nowS });
        cascaded.push(i.id);
      }
    }
  }
  return {
    updates,
    bumpBundle: wasTrusted && target.kind !== 'x509-intermediate',
    plan: { previousState: target.state, cascadedIds: cascaded },
    authorityId: target.id,
    detail: `revoked (was ${target.state}): removed from trust${cascaded.length ? `, with intermediates ${cascaded.join(', ')}` : ''}`,
  };
}
