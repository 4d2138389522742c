/**
 * A small wrapper around a node-postgres pool: queries and transactions that
 * leave this module only as StoreError, 64-bit integers read as numbers, and
 * a close that lets started work finish before the pool ends.
 *
 * BIGINT columns hold seconds and milliseconds since the epoch and sequence
 * numbers, all well inside Number's safe range; a value outside it is
 * reported as CORRUPT rather than silently rounded.
 */
import pg from 'pg';
import { StoreError } from './store.js';

export type PgParams = readonly unknown[];

const INT8_OID = 20;

/** Type parsers for this pool only (pg's global parsers are left alone). */
const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') {
      return (text: string) => {
        const n = Number(text);
        if (!Number.isSafeInteger(n)) throw new StoreError('CORRUPT', `a stored integer (${text.length} digits) is outside the safe range`);
        return n;
      };
    }
    return pg.types.getTypeParser(oid, format as 'text');
  },
} as unknown as pg.CustomTypesConfig;

/**
 * Maps a node-postgres or network error to a StoreError, keeping the
 * original as `cause`. PostgreSQL's messages name tables, columns and
 * constraints; the values (in `detail`) are never copied.
 */
export function toStoreErrorPg(err: unknown, context: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  const detail = err instanceof Error ? err.message : String(err);
  const message = `${context}: ${detail}`;
  if (typeof code === 'string') {
    // 23: integrity constraint violation; 22: a value the column refuses
    // (bad JSON, wrong type); P0001: our triggers' RAISE (append-only audit).
    if (code.startsWith('23') || code.startsWith('22') || code === 'P0001') return new StoreError('CONFLICT', message, { cause: err });
    if (code === 'XX001' || code === 'XX002') return new StoreError('CORRUPT', message, { cause: err });
  }
  if (/pool after calling end|Client was closed/i.test(detail)) return new StoreError('CLOSED', message, { cause: err });
  // Connection failures (ECONNREFUSED, 08xxx, 57P01 shutdown), timeouts, disk full, ...
  return new StoreError('IO', message, { cause: err });
}

/** A connection lent for one transaction or one sequence of statements. */
export class PgSession {
  constructor(readonly client: pg.PoolClient) {}

  async all<T>(sql: string, params: PgParams = []): Promise<T[]> {
    try {
      return (await this.client.query(sql, params as unknown[])).rows as T[];
    } catch (e) {
      throw toStoreErrorPg(e, 'database statement failed');
    }
  }

  async get<T>(sql: string, params: PgParams = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0];
  }

  /** Rows changed by an INSERT, UPDATE or DELETE. */
  async run(sql: string, params: PgParams = []): Promise<number> {
    try {
      return (await this.client.query(sql, params as unknown[])).rowCount ?? 0;
    } catch (e) {
      throw toStoreErrorPg(e, 'database write failed');
    }
  }
}

export interface PgDbOptions {
  /** Most connections the pool opens. Default 10. */
  maxConnections?: number;
  /** How long to wait for a connection, milliseconds. Default 10 000. */
  connectTimeoutMs?: number;
  /** Shown in pg_stat_activity. */
  applicationName?: string;
  /** Told about errors of idle connections (the server restarted, the network dropped). */
  onIdleError?: (err: Error) => void;
}

export class PgDb {
  readonly #pool: pg.Pool;
  readonly #url: string;
  readonly #applicationName: string;
  #inFlight = 0;
  #drained: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  private constructor(pool: pg.Pool, url: string, applicationName: string) {
    this.#pool = pool;
    this.#url = url;
    this.#applicationName = applicationName;
  }

  /** Connects (one round trip, so a wrong URL fails here) and returns the pool. */
  static async open(url: string, options: PgDbOptions = {}): Promise<PgDb> {
    const applicationName = options.applicationName ?? 'brevis-ca';
    const pool = new pg.Pool({
      connectionString: url,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: applicationName,
      types: TYPES,
    });
    // An idle client's error would otherwise be an unhandled 'error' event.
    pool.on('error', (err) => options.onIdleError?.(err));
    const db = new PgDb(pool, url, applicationName);
    try {
      await db.query('SELECT 1');
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw toStoreErrorPg(e, `cannot connect to ${redactUrl(url)}`);
    }
    return db;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** One statement on any pooled connection. */
  query<T>(sql: string, params: PgParams = []): Promise<T[]> {
    return this.#track(async () => {
      try {
        return (await this.#pool.query(sql, params as unknown[])).rows as T[];
      } catch (e) {
        throw toStoreErrorPg(e, 'database statement failed');
      }
    });
  }

  /** One statement; the number of rows it changed. */
  run(sql: string, params: PgParams = []): Promise<number> {
    return this.#track(async () => {
      try {
        return (await this.#pool.query(sql, params as unknown[])).rowCount ?? 0;
      } catch (e) {
        throw toStoreErrorPg(e, 'database write failed');
      }
    });
  }

  /** Runs `fn` with one connection of its own (no transaction). */
  withSession<T>(fn: (s: PgSession) => Promise<T>): Promise<T> {
    return this.#track(async () => {
      let client: pg.PoolClient;
      try {
        client = await this.#pool.connect();
      } catch (e) {
        throw toStoreErrorPg(e, 'cannot get a database connection');
      }
      let broken = false;
      try {
        return await fn(new PgSession(client));
      } catch (e) {
        broken = isConnectionError(e);
        throw e;
      } finally {
        client.release(broken);
      }
    });
  }

  /** Runs `fn` inside BEGIN ... COMMIT on one connection; rolls back if `fn` or the commit fails. */
  transaction<T>(fn: (s: PgSession) => Promise<T>): Promise<T> {
    return this.withSession(async (s) => {
      await s.run('BEGIN');
      try {
        const result = await fn(s);
        await s.run('COMMIT');
        return result;
      } catch (err) {
        await s.client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * A connection of its own, outside the pool, for what lives as long as a
   * session: LISTEN, a lock held while leading. The caller ends it (and
   * must handle its 'error' event). `queryTimeoutMs` bounds every query on it.
   */
  async connectDedicated(purpose: string, queryTimeoutMs?: number): Promise<pg.Client> {
    if (this.#closing) throw new StoreError('CLOSED', 'store is closed');
    const client = new pg.Client({
      connectionString: this.#url,
      keepAlive: true,
      // The pid tells an operator (and the tests) which server holds a session: see the README.
      application_name: `${this.#applicationName}:${purpose}:${process.pid}`.slice(0, 63),
      connectionTimeoutMillis: 10_000,
      ...(queryTimeoutMs ? { query_timeout: queryTimeoutMs } : {}),
      types: TYPES,
    });
    client.on('error', () => undefined); // replaced by the caller's handler; never an unhandled 'error'
    try {
      await client.connect();
    } catch (e) {
      await client.end().catch(() => undefined);
      throw toStoreErrorPg(e, `cannot connect to ${redactUrl(this.#url)}`);
    }
    return client;
  }

  /** Lets started work finish, refuses new work (StoreError 'CLOSED'), ends the pool. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      await this.#pool.end().catch(() => undefined);
    })();
    return this.#closing;
  }

  async #track<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closing) throw new StoreError('CLOSED', 'store is closed');
    this.#inFlight++;
    try {
      return await fn();
    } finally {
      if (--this.#inFlight === 0) this.#drained?.();
    }
  }
}

/** True for errors after which a connection must not be reused. */
function isConnectionError(e: unknown): boolean {
  const cause = e instanceof StoreError ? e.cause : e;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && (code.startsWith('08') || code.startsWith('57') || /^E[A-Z]+$/.test(code));
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the database URL';
  }
}
