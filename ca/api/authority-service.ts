/**
 * The authority life cycle on the admin socket: show every authority with
 * its acknowledgements and outstanding credentials, and prepare, activate,
 * roll back, taint and revoke. Each change is journaled and audited by the
 * life cycle with the admin as caller.
 */
import type { AuthorityInfo, AuthorityServiceServer } from '../../proto/gen/brevis/ca/v1/authority.js';
import { CaError } from '../errors.js';
import { acknowledgements, outstanding, type FleetFacts } from '../rotation/fleet.js';
import type { AuthorityLifecycle } from '../rotation/lifecycle.js';
import { AUTHORITY_KINDS, isAuthorityKind, isTrusted, neededUntil, type LifecycleAuthority, type LifecycleSnapshot } from '../rotation/model.js';
import type { AuthorityKind } from '../store/store.js';
import { ADMIN_CALLER } from './admin-service.js';
import { unary, type ErrorLogger } from './errors.js';

export interface AuthorityServiceDeps {
  lifecycle: Pick<AuthorityLifecycle, 'snapshot' | 'fleet' | 'prepare' | 'activate' | 'rollback' | 'taint' | 'revoke'>;
  logger: ErrorLogger;
}

function requireKind(kind: string): AuthorityKind {
  if (!isAuthorityKind(kind)) throw new CaError('INVALID_ARGUMENT', `unknown authority kind ${JSON.stringify(kind)}: use one of ${AUTHORITY_KINDS.join(', ')}`);
  return kind;
}

function requireId(id: string): string {
  if (!id || id.length > 200) throw new CaError('INVALID_ARGUMENT', 'an authority id is required (see authority show)');
  return id;
}

/** The full picture of one authority. */
export function authorityInfo(a: LifecycleAuthority, s: LifecycleSnapshot, fleet: FleetFacts): AuthorityInfo {
  const trusted = isTrusted(a, s.authorities);
  const acks = trusted ? acknowledgements(a, fleet) : { agents: 0, acknowledged: 0, missing: [] };
  return {
    kind: a.kind,
    id: a.id,
    state: a.state,
    notBefore: a.notBefore,
    notAfter: a.notAfter,
    parentId: a.parentId ?? '',
    createdAt: a.createdAt,
    trusted,
    trustedSinceSequence: a.trustedSinceSeq ?? 0,
    trustedUntil: a.state === 'retired' && trusted ? (neededUntil(s, a) ?? 0) : 0,
    agents: acks.agents,
    acknowledgedAgents: acks.acknowledged,
    unacknowledgedAgents: acks.missing,
    outstandingCredentials: a.state === 'revoked' ? 0 : outstanding(a.id, fleet).credentials,
    publicKey: a.publicDer,
    crossSignedBy: s.crossCerts.filter((c) => c.subjectId === a.id).map((c) => c.issuerId),
  };
}

export function createAuthorityService(deps: AuthorityServiceDeps): AuthorityServiceServer {
  const { lifecycle, logger } = deps;
  const info = async (id: string) => {
    const s = lifecycle.snapshot;
    const a = s.authorities.find((x) => x.id === id);
    if (!a) throw new CaError('INTERNAL', `authority ${id} vanished`);
    return authorityInfo(a, s, await lifecycle.fleet());
  };

  return {
    listAuthorities: unary(async () => {
      const s = lifecycle.snapshot;
      const fleet = await lifecycle.fleet();
      const order = (k: AuthorityKind) => AUTHORITY_KINDS.indexOf(k);
      const sorted = [...s.authorities].sort((a, b) => order(a.kind) - order(b.kind) || a.notBefore - b.notBefore || (a.id < b.id ? -1 : 1));
      return { authorities: sorted.map((a) => authorityInfo(a, s, fleet)), bundleSequence: s.bundleSequence };
    }, logger),

    prepareAuthority: unary(async (req) => {
      const r = await lifecycle.prepare(requireKind(req.kind), { caller: ADMIN_CALLER, ...(req.keyType ? { keyType: req.keyType } : {}) });
      const also = await Promise.all(r.alsoPrepared.map((a) => info(a.id)));
      return { authority: await info(r.prepared.id), alsoPrepared: also };
    }, logger),

    activateAuthority: unary(async (req) => {
      const r = await lifecycle.activate(requireKind(req.kind), requireId(req.id), { caller: ADMIN_CALLER, force: req.force });
      return { authority: await info(r.activated.id), retiredIds: r.retiredIds, unacknowledgedAgents: r.unacknowledged };
    }, logger),

    rollbackAuthority: unary(async (req) => {
      const r = await lifecycle.rollback(requireKind(req.kind), { caller: ADMIN_CALLER });
      return { undone: r.undone, rolledBackId: r.rolledBackId, activeId: r.activeId };
    }, logger),

    taintAuthority: unary(async (req) => {
      const a = await lifecycle.taint(requireKind(req.kind), requireId(req.id), { caller: ADMIN_CALLER });
      return { authority: await info(a.id) };
    }, logger),

    revokeAuthority: unary(async (req) => {
      const r = await lifecycle.revoke(requireKind(req.kind), requireId(req.id), { caller: ADMIN_CALLER, force: req.force });
      return { authority: await info(r.authority.id), outstandingCredentials: r.outstanding };
    }, logger),
  };
}
