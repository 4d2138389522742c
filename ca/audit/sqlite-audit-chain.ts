/**
 * The hash chain on the SQLite audit table (columns `prev_hash` and `hash`,
 * migration 3). Appends run inside the caller's write transaction (BEGIN
 * IMMEDIATE holds SQLite's write lock, and `Db` serializes this process's
 * users), so concurrent appends, even from two processes, read the true
 * previous record and chain correctly.
 */
import type { Db, Session } from '../store/db.js';
import { auditFromRow, type AuditRow } from '../store/sqlite-rows.js';
import type { AuditRecord } from '../store/store.js';
import { GENESIS_HASH, auditRecordHash, type ChainedAuditRecord } from './audit-hash.js';

interface ChainRow extends AuditRow {
  prev_hash: string | null;
  hash: string | null;
}

const SELECT_CHAIN = 'SELECT seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail, prev_hash, hash FROM audit';

const INSERT_COLUMNS = 'INSERT INTO audit (seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail, prev_hash, hash) VALUES ';
const ROW_PLACEHOLDERS = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';

/**
 * Rows per INSERT statement, largest first: n rows take about n/64 + 6
 * statements instead of n (each statement is a round trip to libuv's thread
 * pool, where it may wait behind other work), and only these seven
 * statements are ever prepared. 64 rows use 704 of SQLite's 32,766 parameters.
 */
const CHUNKS = [64, 32, 16, 8, 4, 2, 1] as const;
const insertSql = new Map<number, string>(CHUNKS.map((n) => [n, INSERT_COLUMNS + Array(n).fill(ROW_PLACEHOLDERS).join(', ')]));

/** The last record's seq and hash (seq 0 and the genesis hash for an empty table). */
async function chainHead(s: Session): Promise<{ seq: number; hash: string }> {
  const last = await s.get<{ seq: number; hash: string | null }>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
  // AUTOINCREMENT's high-water mark: a seq is never handed out twice, even
  // if the newest rows were (illegally) deleted.
  const hw = await s.get<{ seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'audit'");
  return { seq: Math.max(last?.seq ?? 0, hw?.seq ?? 0), hash: last?.hash ?? GENESIS_HASH };
}

/**
 * Appends `records` in order, chained to the current last record. Must run
 * inside a write transaction (`Db.transaction`). Callers' `seq` values are
 * ignored: the chain assigns the next ones.
 */
export async function appendChainedAudit(s: Session, records: readonly AuditRecord[]): Promise<void> {
  if (records.length === 0) return;
  let { seq, hash } = await chainHead(s);
  const rows: unknown[][] = [];
  for (const r of records) {
    seq++;
    const next = auditRecordHash(seq, r, hash);
    rows.push([seq, r.timeMs, r.caller, r.action, r.spiffeId, r.serial, r.notAfter, r.outcome, r.detail, hash, next]);
    hash = next;
  }
  // In seq order, several rows per statement (multi-row VALUES insert in order).
  for (let i = 0; i < rows.length; ) {
    const n = CHUNKS.find((c) => c <= rows.length - i)!;
    await s.runPrepared(insertSql.get(n)!, rows.slice(i, i + n).flat());
    i += n;
  }
}

/**
 * Chains records written before the chain existed (hash NULL), in seq
 * order, after the record before them. Runs once when a database from an
 * older version is opened; a no-op afterwards. The update trigger allows
 * exactly this: setting a NULL hash, nothing else.
 */
export async function backfillAuditChain(db: Db): Promise<number> {
  return db.transaction(async (s) => {
    const rows = await s.all<ChainRow>(`${SELECT_CHAIN} WHERE hash IS NULL ORDER BY seq`);
    let filled = 0;
    for (const row of rows) {
      const before = await s.get<{ hash: string | null }>('SELECT hash FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT 1', [row.seq]);
      const prev = before?.hash ?? GENESIS_HASH;
      const hash = auditRecordHash(row.seq, auditFromRow(row), prev);
      await s.run('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?', [prev, hash, row.seq]);
      filled++;
    }
    return filled;
  });
}

export interface ReadChainOptions {
  /** Only records with seq greater than this. */
  afterSeq?: number;
  /** Only records at or after this time, milliseconds. */
  sinceMs?: number;
  limit?: number;
}

/** Records with their hashes, oldest first. A record never chained has empty hash strings. */
export function readAuditChain(db: Db, options: ReadChainOptions = {}): Promise<ChainedAuditRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (options.afterSeq !== undefined) {
    where.push('seq > ?');
    params.push(options.afterSeq);
  }
  if (options.sinceMs !== undefined) {
    where.push('time_ms >= ?');
    params.push(options.sinceMs);
  }
  params.push(options.limit ?? -1);
  const sql = `${SELECT_CHAIN} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq LIMIT ?`;
  return db.exclusive(async (s) =>
    (await s.all<ChainRow>(sql, params)).map((row) => ({ ...auditFromRow(row), seq: row.seq, prevHash: row.prev_hash ?? '', hash: row.hash ?? '' })),
  );
}
