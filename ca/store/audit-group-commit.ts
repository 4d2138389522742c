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
 */
import type { Db, Session } from './db.js';
import type { AuditRecord } from './store.js';

interface Member {
  records: readonly AuditRecord[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Writes records inside a transaction that the caller opened. */
export type AuditWriter = (s: Session, records: readonly AuditRecord[]) => Promise<void>;

export class AuditGroupCommit {
  readonly #db: Db;
  readonly #write: AuditWriter;
  /** The group still taking members: its transaction is queued but has not started. */
  #open: Member[] | null = null;

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
    try {
      await inTransaction(s, () => this.#write(s, group.flatMap((m) => m.records)));
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
        await inTransaction(s, () => this.#write(s, m.records));
        m.resolve();
      } catch (err) {
        m.reject(err);
      }
    }
  }
}

/** BEGIN IMMEDIATE ... COMMIT on a session already held, rolled back on failure (as Db.transaction). */
async function inTransaction(s: Session, fn: () => Promise<void>): Promise<void> {
  await s.exec('BEGIN IMMEDIATE');
  try {
    await fn();
    await s.exec('COMMIT');
  } catch (err) {
    // sqlite rolls back by itself after some errors; a second ROLLBACK then fails harmlessly.
    await s.exec('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
