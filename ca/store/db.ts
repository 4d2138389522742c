/**
 * A small promise wrapper around one node-sqlite3 connection.
 *
 * node-sqlite3 runs each statement on the libuv thread pool, so two async
 * callers sharing one connection could interleave their statements: a write
 * could land inside someone else's transaction and be rolled back with it.
 * Every use of the connection therefore goes through `exclusive` (or
 * `transaction`), a FIFO queue that hands out a `Session` to one caller at a
 * time. There is no way to run SQL without holding the queue.
 *
 * Every sqlite error leaves this module as a StoreError (see `toStoreError`).
 */
import sqlite3 from 'sqlite3';
import { StoreError } from './store.js';

export type SqlParams = readonly unknown[];

export interface RunResult {
  /** Rows changed by an INSERT, UPDATE or DELETE. */
  changes: number;
  /** Rowid of the last inserted row. */
  lastId: number;
}

/**
 * Maps a node-sqlite3 error to a StoreError, keeping the original as `cause`.
 * sqlite's messages name tables and columns, never bound values, so they are
 * safe to keep.
 */
export function toStoreError(err: unknown, context: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  const detail = err instanceof Error ? err.message : String(err);
  const message = `${context}: ${detail}`;
  switch (code) {
    case 'SQLITE_CONSTRAINT':
      return new StoreError('CONFLICT', message, { cause: err });
    case 'SQLITE_CORRUPT':
    case 'SQLITE_NOTADB':
      return new StoreError('CORRUPT', message, { cause: err });
    case 'SQLITE_MISUSE':
      if (/closed/i.test(detail)) return new StoreError('CLOSED', message, { cause: err });
      return new StoreError('IO', message, { cause: err });
    default:
      // SQLITE_READONLY, SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY, SQLITE_CANTOPEN, ...
      return new StoreError('IO', message, { cause: err });
  }
}

/** The connection, lent to one caller at a time by `Db.exclusive`. */
export class Session {
  readonly #raw: sqlite3.Database;
  readonly #prepared: Map<string, sqlite3.Statement>;

  /** @internal Only `Db` creates sessions. */
  constructor(raw: sqlite3.Database, prepared: Map<string, sqlite3.Statement>) {
    this.#raw = raw;
    this.#prepared = prepared;
  }

  run(sql: string, params: SqlParams = []): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      this.#raw.run(sql, params, function (this: sqlite3.RunResult, err: Error | null) {
        if (err) reject(toStoreError(err, 'database write failed'));
        else resolve({ changes: this.changes, lastId: this.lastID });
      });
    });
  }

  get<T>(sql: string, params: SqlParams = []): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
      this.#raw.get<T>(sql, params, (err: Error | null, row: T | undefined) => {
        if (err) reject(toStoreError(err, 'database read failed'));
        else resolve(row);
      });
    });
  }

  all<T>(sql: string, params: SqlParams = []): Promise<T[]> {
    return new Promise((resolve, reject) => {
      this.#raw.all<T>(sql, params, (err: Error | null, rows: T[]) => {
        if (err) reject(toStoreError(err, 'database read failed'));
        else resolve(rows);
      });
    });
  }

  /** Runs a script of several statements without parameters (DDL, PRAGMAs). */
  exec(sql: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#raw.exec(sql, (err: Error | null) => {
        if (err) reject(toStoreError(err, 'database statement failed'));
        else resolve();
      });
    });
  }

  /**
   * Runs `sql` through a prepared statement kept for the life of the
   * connection (prepared on first use, finalized by `Db.close`).
   */
  async runPrepared(sql: string, params: SqlParams): Promise<RunResult> {
    const stmt = this.#prepared.get(sql) ?? (await this.#prepare(sql));
    return new Promise((resolve, reject) => {
      stmt.run(params, function (this: sqlite3.RunResult, err: Error | null) {
        if (err) reject(toStoreError(err, 'database write failed'));
        else resolve({ changes: this.changes, lastId: this.lastID });
      });
    });
  }

  #prepare(sql: string): Promise<sqlite3.Statement> {
    return new Promise((resolve, reject) => {
      const stmt: sqlite3.Statement = this.#raw.prepare(sql, (err: Error | null) => {
        if (err) {
          reject(toStoreError(err, 'database statement failed'));
          return;
        }
        this.#prepared.set(sql, stmt);
        resolve(stmt);
      });
    });
  }
}

export interface DbOptions {
  /** How long sqlite waits for another process's lock before SQLITE_BUSY, in milliseconds. */
  busyTimeoutMs: number;
}

/** One connection plus the queue that serializes its users. */
export class Db {
  readonly #raw: sqlite3.Database;
  readonly #prepared = new Map<string, sqlite3.Statement>();
  readonly #session: Session;
  #tail: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;

  private constructor(raw: sqlite3.Database) {
    this.#raw = raw;
    this.#session = new Session(raw, this.#prepared);
  }

  /** Opens (creating if needed) the database file at `path`. */
  static open(path: string, options: DbOptions): Promise<Db> {
    return new Promise((resolve, reject) => {
      const raw = new sqlite3.Database(path, sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE, (err) => {
        if (err) {
          reject(toStoreError(err, `cannot open database ${path}`));
          return;
        }
        raw.configure('busyTimeout', options.busyTimeoutMs);
        resolve(new Db(raw));
      });
    });
  }

  /** True once `close` has been called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Waits for the connection, then runs `fn` with sole use of it. Callers
   * queue in FIFO order; a failing `fn` does not block those behind it.
   */
  exclusive<T>(fn: (s: Session) => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new StoreError('CLOSED', 'store is closed'));
    const result = this.#tail.then(() => fn(this.#session));
    this.#tail = result.catch(() => undefined);
    return result;
  }

  /**
   * Runs `fn` inside `BEGIN IMMEDIATE ... COMMIT` with sole use of the
   * connection; rolls back if `fn` or the commit fails. IMMEDIATE takes the
   * write lock up front so a second process cannot make the upgrade fail.
   */
  transaction<T>(fn: (s: Session) => Promise<T>): Promise<T> {
    return this.exclusive(async (s) => {
      await s.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(s);
        await s.exec('COMMIT');
        return result;
      } catch (err) {
        // sqlite rolls back by itself after some errors (SQLITE_FULL, IOERR,
        // BUSY); a second ROLLBACK then fails harmlessly.
        await s.exec('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * Lets queued work finish, refuses new work (StoreError 'CLOSED'),
   * finalizes prepared statements and closes the connection. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#tail.then(async () => {
      for (const stmt of this.#prepared.values()) {
        await new Promise<void>((resolve) => stmt.finalize(() => resolve()));
      }
      this.#prepared.clear();
      await new Promise<void>((resolve, reject) => {
        this.#raw.close((err) => (err ? reject(toStoreError(err, 'cannot close database')) : resolve()));
      });
    });
    return this.#closing;
  }
}
