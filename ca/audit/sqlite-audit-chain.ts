/**
 * The hash chain on the SQLite audit table (columns `prev_hash` and `hash`,
 * migration 3). Appends run inside the caller's write transaction (BEGIN
 * IMMEDIATE holds SQLite's write lock, and `Db` serializes this process's
 * users), so concurrent appends, even from two processes, read the true
 * previous record and chain correctly; or, for a writer that knows the head
 * it wrote last, as one statement that the trigger `audit_chain_link`
 * (migration 5) refuses if that head is stale.
 */
import type { Db, Session } from '../store/db.js';
import { auditFromRow, type AuditRow } from '../store/sqlite-rows.js';
import type { AuditRecord } from '../store/store.js';
import { GENESIS_HASH, auditRecordHash, type ChainHead, type ChainedAuditRecord } from './audit-hash.js';

interface ChainRow extends AuditRow {
  prev_hash: string | null;
  hash: string | null;
}

const SELECT_CHAIN = 'SELECT seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail, prev_hash, hash FROM audit';

const INSERT_COLUMNS = 'INSERT INTO audit (seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail, prev_hash, hash) VALUES ';
const ROW_PLACEHOLDERS = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';

/**
 * Rows per INSERT statement inside a transaction, largest first: n rows
 * take about n/64 + 6 statements instead of n (each statement is a round
 * trip to libuv's thread pool, where it may wait behind other work), and
 * only these seven statements are ever prepared. 64 rows use 704 of
 * SQLite's 32,766 parameters.
 */
const CHUNKS = [64, 32, 16, 8, 4, 2, 1] as const;
const insertSqlCache = new Map<number, string>();
function insertSql(rows: number): string {
  let sql = insertSqlCache.get(rows);
  if (!sql) insertSqlCache.set(rows, (sql = INSERT_COLUMNS + Array(rows).fill(ROW_PLACEHOLDERS).join(', ')));
  return sql;
}

/** The last record's seq and hash (seq 0 and the genesis hash for an empty table). */
async function chainHead(s: Session): Promise<ChainHead> {
  // AUTOINCREMENT's high-water mark: a seq is never handed out twice, even
  // if the newest rows were (illegally) deleted.
  const head = await s.get<{ seq: number | null; hash: string | null; hw: number | null }>(
    `SELECT (SELECT seq FROM audit ORDER BY seq DESC LIMIT 1) AS seq, (SELECT hash FROM audit ORDER BY seq DESC LIMIT 1) AS hash,
       (SELECT seq FROM sqlite_sequence WHERE name = 'audit') AS hw`,
  );
  return { seq: Math.max(head?.seq ?? 0, head?.hw ?? 0), hash: head?.hash ?? GENESIS_HASH };
}

/** The rows for `records` chained after `head`, and the head they leave. */
function chainRows(records: readonly AuditRecord[], head: ChainHead): { rows: unknown[][]; head: ChainHead } {
  let { seq, hash } = head;
  const rows: unknown[][] = [];
  for (const r of records) {
    seq++;
    const next = auditRecordHash(seq, r, hash);
    rows.push([seq, r.timeMs, r.caller, r.action, r.spiffeId, r.serial, r.notAfter, r.outcome, r.detail, hash, next]);
    hash = next;
  }
  return { rows, head: { seq, hash } };
}

/**
 * Appends `records` in order, chained to the current last record. Must run
 * inside a write transaction (`Db.transaction`). Callers' `seq` values are
 * ignored: the chain assigns the next ones. Returns the new head.
 */
export async function appendChainedAudit(s: Session, records: readonly AuditRecord[]): Promise<ChainHead> {
  const before = await chainHead(s);
  if (records.length === 0) return before;
  const { rows, head } = chainRows(records, before);
  // In seq order, several rows per statement (multi-row VALUES insert in order).
  for (let i = 0; i < rows.length; ) {
    const n = CHUNKS.find((c) => c <= rows.length - i)!;
    await s.runPrepared(insertSql(n), rows.slice(i, i + n).flat());
    i += n;
  }
  return head;
}

/** The most records `appendChainedAuditAfter` writes (11 parameters each, of SQLite's 32,766). */
export const MAX_ROWS_AFTER_HEAD = 256;

/**
 * Appends `records` chained after `head`, a head this process wrote last,
 * as one INSERT outside any transaction: SQLite commits the statement
 * alone, all rows or none, in one round trip instead of the five of
 * BEGIN, head, INSERT, COMMIT. When `head` is no longer the last record
 * (another writer appended since), the insert trigger `audit_chain_link`
 * refuses the first row and nothing is written (StoreError CONFLICT): the
 * caller then takes `appendChainedAudit` in a transaction.
 */
export async function appendChainedAuditAfter(s: Session, records: readonly AuditRecord[], head: ChainHead): Promise<ChainHead> {
  if (records.length === 0) return head;
  if (records.length > MAX_ROWS_AFTER_HEAD) throw new RangeError(`at most ${MAX_ROWS_AFTER_HEAD} records in one statement`);
  const { rows, head: next } = chainRows(records, head);
  await s.runPrepared(insertSql(rows.length), rows.flat());
  return next;
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
