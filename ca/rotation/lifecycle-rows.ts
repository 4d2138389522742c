/**
 * The life cycle's rows and how they read back, the same on SQLite
 * (lifecycle-store.ts) and PostgreSQL (ca/store/postgres-lifecycle.ts):
 * both databases have the same tables and columns (migration 4 and its
 * PostgreSQL twin); only placeholders and ordering columns differ.
 */
import { StoreError, type AuthorityKind, type AuthorityState } from '../store/store.js';
import type { JournalEntry, JournalStatus, TransitionPlan } from './lifecycle-store.js';
import type { CrossCert, LifecycleAuthority } from './model.js';

/** The `meta` key holding the bundle sequence. */
export const BUNDLE_SEQUENCE_KEY = 'bundle_sequence';

/** Columns of `authorities` as the snapshot reads them (ORDER BY is the caller's). */
export const SELECT_AUTHORITIES = `SELECT id, kind, state, public_der, parent_id, key_ref, not_before, not_after, created_at,
  trusted_since_seq, retired_at, trust_until, untrusted_at FROM authorities`;

export const SELECT_CROSS_CERTS = 'SELECT subject_id, issuer_id, der, not_after, created_at FROM authority_cross_certs ORDER BY created_at, issuer_id';

export const SELECT_JOURNAL = 'SELECT seq, started_ms, finished_ms, kind, action, authority_id, caller, status, plan, detail FROM authority_journal';

export interface AuthorityRow {
  id: string;
  kind: AuthorityKind;
  state: AuthorityState;
  public_der: Buffer;
  parent_id: string | null;
  key_ref: string;
  not_before: number;
  not_after: number;
  created_at: number;
  trusted_since_seq: number | null;
  retired_at: number | null;
  trust_until: number | null;
  untrusted_at: number | null;
}

export interface CrossCertRow {
  subject_id: string;
  issuer_id: string;
  der: Buffer;
  not_after: number;
  created_at: number;
}

export interface JournalRow {
  seq: number;
  started_ms: number;
  finished_ms: number | null;
  kind: AuthorityKind;
  action: string;
  authority_id: string | null;
  caller: string;
  status: JournalStatus;
  plan: string;
  detail: string | null;
}

export function authorityFromRow(r: AuthorityRow): LifecycleAuthority {
  return {
    id: r.id,
    kind: r.kind,
    state: r.state,
    publicDer: Buffer.from(r.public_der),
    parentId: r.parent_id,
    keyRef: r.key_ref,
    notBefore: r.not_before,
    notAfter: r.not_after,
    createdAt: r.created_at,
    trustedSinceSeq: r.trusted_since_seq,
    retiredAt: r.retired_at,
    trustUntil: r.trust_until,
    untrustedAt: r.untrusted_at,
  };
}

export function crossCertFromRow(c: CrossCertRow): CrossCert {
  return { subjectId: c.subject_id, issuerId: c.issuer_id, der: Buffer.from(c.der), notAfter: c.not_after, createdAt: c.created_at };
}

export function journalFromRow(r: JournalRow): JournalEntry {
  let plan: TransitionPlan;
  try {
    plan = JSON.parse(r.plan) as TransitionPlan;
  } catch (e) {
    throw new StoreError('CORRUPT', `authority journal entry ${r.seq} has a malformed plan`, { cause: e });
  }
  return {
    seq: r.seq,
    startedMs: r.started_ms,
    finishedMs: r.finished_ms,
    kind: r.kind,
    action: r.action,
    authorityId: r.authority_id,
    caller: r.caller,
    status: r.status,
    plan,
    detail: r.detail,
  };
}

export function parseHoldings(text: string, agentId: string): Record<string, number> {
  try {
    return JSON.parse(text) as Record<string, number>;
  } catch (e) {
    throw new StoreError('CORRUPT', `agent status of ${agentId} is malformed`, { cause: e });
  }
}

/** The bundle sequence from its `meta` value (absent: 0). */
export function parseBundleSequence(value: string | undefined): number {
  const n = Number(value ?? '0');
  if (!Number.isSafeInteger(n) || n < 0) throw new StoreError('CORRUPT', `meta ${BUNDLE_SEQUENCE_KEY} is not a sequence number`);
  return n;
}
