/**
 * Group commit for audit records. Every issuance waits for its audit record
 * to be durable, and with `synchronous = FULL` each commit costs an fsync:
 * one transaction per call caps a CA at a few hundred calls per second.
 * Here, appends that arrive while the transaction before them is queued or
 * running share the next transaction, so one fsync covers all of them.
 *
 * Each append's promise settles only when the transaction holding its
 * records has committed (the certificate is still returned only after its
 * record is durable) or failed. The group's transaction is queued on the
 * connection when its first append arrives, so closing the store still
 * lets appends made before the close finish. When a group fails, its appends
 * are retried one by one in the same turn of the connection, so a bad record
 * fails only its own call, as with one transaction per call.
 *
 * The chain's head (the last record's seq and hash) is remembered after
 * each commit, and the next group is then written as one statement chained
 * after it (`AuditWriter.appendAfter`): one round trip to SQLite instead of
 * five (BEGIN, head, INSERT, COMMIT), which on a busy event loop is most of
 * a single mint's latency. If anyone else appended since (a rotation's
 * records, another process), the database refuses the stale link, nothing
 * is written, and the group takes the transaction with a fresh head.
 */
import type { ChainHead } from '../audit/audit-hash.js';
import type { Db, Session } from './db.js';
import type { AuditRecord } from './store.js';


interface Member {
  records: readonly AuditRecord[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface AuditWriter {
  /** Writes records inside a transaction that the caller opened; returns the new head. */
  append(s: Session, records: readonly AuditRecord[]): Promise<ChainHead>;
  /**
   * Writes records as one statement of its own, chained after `head`;
   * rejects, having written nothing, when `head` is not the last record.
   */
  appendAfter?(s: Session, records: readonly AuditRecord[], head: ChainHead): Promise<ChainHead>;
  /** The most records appendAfter takes. */
  readonly maxRowsAfter?: number;
}

export class AuditGroupCommit {
  readonly #db: Db;
  readonly #write: AuditWriter;
  /** The group still taking members: its transaction is queued but has not started. */
  #open: Member[] | null = null;
  /** The head this writer committed last; undefined until known, and after any failure. */
  #head: ChainHead | undefined;

  constructor(db: Db, write: AuditWriter) {
    this.#db = db;
    this.#write = write;
  }

  append(records: readonly AuditRecord[]): Promise<void> {
    let group = this.#open;
    if (!group) {
      const g: Member[] = [];
      group = this.#open = g;
      this.#db
        .exclusive((s) => {
          if (this.#open === g) this.#open = null;
          return this.#commit(s, g);
        })
        .catch((err: unknown) => {
          // Only when the connection refused the work (closed): nothing ran.
          if (this.#open === g) this.#open = null;
          for (const m of g) m.reject(err);
        });
    }
    return new Promise((resolve, reject) => group.push({ records, resolve, reject }));
  }

  async #commit(s: Session, group: readonly Member[]): Promise<void> {
    const records = group.flatMap((m) => m.records);
    const head = this.#head;
    this.#head = undefined;
    const w = this.#write;
    if (head && w.appendAfter && records.length <= (w.maxRowsAfter ?? 0)) {
      try {
        this.#head = await w.appendAfter(s, records, head);
        for (const m of group) m.resolve();
        return;
      } catch {
        // A stale head or a refused record: nothing was written; the transaction below decides.
      }
    }
    try {
      this.#head = await inTransaction(s, () => w.append(s, records));
      for (const m of group) m.resolve();
      return;
    } catch (err) {
      if (group.length === 1) {
        group[0]!.reject(err);
        return;
      }
    }
    for (const m of group) {
      try {
        this.#head = await inTransaction(s, () => w.append(s, m.records));
        m.resolve();
      } catch (err) {
        m.reject(err);
      }
    }
  }
}

/** BEGIN IMMEDIATE ... COMMIT on a session already held, rolled back on failure (as Db.transaction). */
async function inTransaction<T>(s: Session, fn: () => Promise<T>): Promise<T> {
  await s.exec('BEGIN IMMEDIATE');
  try {
    const r = await fn();
    await s.exec('COMMIT');
    return r;
  } catch (err) {
    // sqlite rolls back by itself after some errors; a second ROLLBACK then fails harmlessly.
    await s.exec('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
