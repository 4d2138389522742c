/**
 * A comparable picture of everything a CA stores, to prove that hostile
 * input changed nothing: every table's rows (entries, agents, join tokens,
 * authorities, ...) plus the audit trail's length, so that a test can check
 * the audit grew only by failure records.
 */
import { expect } from 'vitest';
import type { SqliteStore } from '../../ca/store/sqlite.js';
import type { AuditRecord, Store } from '../../ca/store/store.js';

/** Columns that legitimately move on a successful read-only call (an agent polling). */
const VOLATILE = new Set(['last_seen_at', 'reported_at']);
/** Tables compared another way (audit) or owned by the store itself. */
const SKIPPED = new Set(['audit', 'schema_migrations', 'sqlite_sequence']);

export interface StoreSnapshot {
  tables: Record<string, unknown[]>;
  auditSeq: number;
}

export async function snapshotStore(store: Store): Promise<StoreSnapshot> {
  const db = (store as SqliteStore).db;
  return db.exclusive(async (s) => {
    const names = await s.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    const tables: Record<string, unknown[]> = {};
    for (const { name } of names) {
      if (SKIPPED.has(name)) continue;
      const rows = await s.all<Record<string, unknown>>(`SELECT * FROM "${name}" ORDER BY 1`);
      tables[name] = rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !VOLATILE.has(k))));
    }
    const seq = await s.get<{ seq: number | null }>('SELECT max(seq) AS seq FROM audit');
    return { tables, auditSeq: seq?.seq ?? 0 };
  });
}

/** Audit records appended after `seq`. */
export async function auditAfter(store: Store, seq: number): Promise<AuditRecord[]> {
  return (await store.listAudit()).filter((r) => (r.seq ?? 0) > seq);
}

/** Asserts nothing but failure audit records was added since `before`; returns how many were. */
export async function expectUnchanged(store: Store, before: StoreSnapshot): Promise<number> {
  const after = await snapshotStore(store);
  expect(after.tables).toEqual(before.tables);
  const added = await auditAfter(store, before.auditSeq);
  const successes = added.filter((r) => r.outcome !== 'failure');
  expect(successes, `hostile input produced success audit records: ${JSON.stringify(successes.slice(0, 3))}`).toEqual([]);
  return added.length;
}
