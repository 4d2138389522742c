/**
 * The audit hash chain (ca/audit/audit-hash.ts) on PostgreSQL. Every server
 * appends to the same chain: an append first takes the one row of
 * `audit_head` FOR UPDATE, which serializes appends across all servers
 * until the appending transaction ends, then reads the true previous
 * record, inserts the new ones and moves the head. `audit_head.seq` is the
 * high-water mark, so a seq is never handed out twice even if the newest
 * rows were deleted (the gap then gives the deletion away).
 */
import { GENESIS_HASH, auditRecordHash, type ChainedAuditRecord } from '../audit/audit-hash.js';
import type { ReadChainOptions } from '../audit/sqlite-audit-chain.js';
import type { PgDb, PgSession } from './postgres-db.js';
import { auditFromRow, type AuditRow } from './sqlite-rows.js';
import type { AuditRecord } from './store.js';

interface ChainRow extends AuditRow {
  prev_hash: string | null;
  hash: string | null;
}

const SELECT_CHAIN = 'SELECT seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail, prev_hash, hash FROM audit';

/** Rows per INSERT statement (11 parameters each, well under the 65 535 limit). */
const ROWS_PER_INSERT = 500;

/**
 * Appends `records` in order, chained to the current last record. Must run
 * inside a transaction (`PgDb.transaction`): the head row stays locked
 * until it ends. Callers' `seq` values are ignored.
 */
export async function appendChainedAuditPg(s: PgSession, records: readonly AuditRecord[]): Promise<void> {
  if (records.length === 0) return;
  const head = await s.get<{ seq: number }>('SELECT seq FROM audit_head FOR UPDATE');
  const last = await s.get<{ seq: number; hash: string | null }>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
  let seq = Math.max(head?.seq ?? 0, last?.seq ?? 0);
  let hash = last?.hash ?? GENESIS_HASH;
  for (let start = 0; start < records.length; start += ROWS_PER_INSERT) {
    const batch = records.slice(start, start + ROWS_PER_INSERT);
    const params: unknown[] = [];
    const tuples: string[] = [];
    for (const r of batch) {
      seq++;
      const next = auditRecordHash(seq, r, hash);
      const base = params.length;
      tuples.push(`(${Array.from({ length: 11 }, (_, i) => `$${base + i + 1}`).join(', ')})`);
      params.push(seq, r.timeMs, r.caller, r.action, r.spiffeId, r.serial, r.notAfter, r.outcome, r.detail, hash, next);
      hash = next;
    }
    await s.run(
      `INSERT INTO audit (seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail, prev_hash, hash)
       VALUES ${tuples.join(', ')}`,
      params,
    );
  }
  if (head) await s.run('UPDATE audit_head SET seq = $1', [seq]);
  else await s.run('INSERT INTO audit_head (seq) VALUES ($1)', [seq]);
}

/** Chains records that carry no hash yet (written outside the chain), in seq order. Returns how many. */
export function backfillAuditChainPg(db: PgDb): Promise<number> {
  return db.transaction(async (s) => {
    await s.get('SELECT seq FROM audit_head FOR UPDATE');
    const rows = await s.all<ChainRow>(`${SELECT_CHAIN} WHERE hash IS NULL ORDER BY seq`);
    for (const row of rows) {
      const before = await s.get<{ hash: string | null }>('SELECT hash FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT 1', [row.seq]);
      const prev = before?.hash ?? GENESIS_HASH;
      await s.run('UPDATE audit SET prev_hash = $1, hash = $2 WHERE seq = $3', [prev, auditRecordHash(row.seq, auditFromRow(row), prev), row.seq]);
    }
    return rows.length;
  });
}

/** Records with their hashes, oldest first. A record never chained has empty hash strings. */
export async function readAuditChainPg(db: PgDb, options: ReadChainOptions = {}): Promise<ChainedAuditRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (options.afterSeq !== undefined) {
    params.push(options.afterSeq);
    where.push(`seq > $${params.length}`);
  }
  if (options.sinceMs !== undefined) {
    params.push(options.sinceMs);
    where.push(`time_ms >= $${params.length}`);
  }
  params.push(options.limit ?? null); // LIMIT NULL: no limit
  const sql = `${SELECT_CHAIN} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq LIMIT $${params.length}`;
  const rows = await db.query<ChainRow>(sql, params);
  return rows.map((row) => ({ ...auditFromRow(row), seq: row.seq, prevHash: row.prev_hash ?? '', hash: row.hash ?? '' }));
}
