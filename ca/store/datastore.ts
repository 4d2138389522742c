/**
 * Where the CA keeps its state: a SQLite file in the data directory (the
 * default, one server), or a PostgreSQL database shared by several servers
 * (`--datastore postgres://...`). Opens the Store together with the
 * backend-specific parts the CA needs beside it (the authority life cycle's
 * storage, the audit chain with its hashes).
 */
import path from 'node:path';
import { realClock, type Clock } from '../../spiffe/clock.js';
import type { ChainedAuditRecord } from '../audit/audit-hash.js';
import type { CrashHook } from '../crash-hook.js';
import { readAuditChain, type ReadChainOptions } from '../audit/sqlite-audit-chain.js';
import { SqliteLifecycleStore } from '../rotation/lifecycle-store.js';
import { PostgresLifecycleStore, type LifecycleStorage } from './postgres-lifecycle.js';
import { isPostgresUrl, openPostgresStore, type PostgresStore } from './postgres.js';
import { redactUrl } from './postgres-db.js';
import { openSqliteStore } from './sqlite.js';
import type { Store } from './store.js';

export type { LifecycleStorage } from './postgres-lifecycle.js';

/** The configured datastore (CaConfig.datastore). */
export type DatastoreSetting = { readonly kind: 'sqlite' } | { readonly kind: 'postgres'; readonly url: string };

/** The SQLite file inside the data directory. */
export const SQLITE_FILE = 'brevis.db';

/**
 * Parses the `datastore` setting: absent or `sqlite` for the SQLite file in
 * the data directory, a `postgres://` or `postgresql://` URL for
 * PostgreSQL. Throws TypeError with a message for anything else.
 */
export function parseDatastore(value: string | undefined): DatastoreSetting {
  if (value === undefined || value === 'sqlite') return { kind: 'sqlite' };
  if (isPostgresUrl(value)) {
    try {
      const u = new URL(value);
      if (!u.hostname && !u.searchParams.get('host')) throw new Error('no host');
    } catch {
      throw new TypeError(`datastore ${redactUrl(value)} is not a valid PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE)`);
    }
    return { kind: 'postgres', url: value };
  }
  throw new TypeError('datastore must be "sqlite" or a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE)');
}

/** A short description for logs (never the password). */
export function describeDatastore(d: DatastoreSetting, dataDir: string): string {
  return d.kind === 'sqlite' ? `sqlite ${path.join(dataDir, SQLITE_FILE)}` : `postgres ${redactUrl(d.url)}`;
}

export interface OpenedDatastore {
  readonly store: Store;
  /** The authority life cycle's tables, in the same database. */
  readonly lifecycleStore: LifecycleStorage;
  /** Audit records with their hashes, oldest first (verification, AuditService). */
  readAuditChain(options?: ReadChainOptions): Promise<ChainedAuditRecord[]>;
  /** The PostgreSQL store when the datastore is shared (keys, coordination); null for SQLite. */
  readonly postgres: PostgresStore | null;
}

export interface OpenDatastoreOptions {
  dataDir: string;
  clock?: Clock;
  /** Told about errors of idle PostgreSQL connections (they are replaced). */
  onConnectionError?: (err: Error) => void;
  /** Crash points for tests in the schema migrations (ca/crash-hook.ts). */
  crashHook?: CrashHook;
}

export async function openDatastore(setting: DatastoreSetting, o: OpenDatastoreOptions): Promise<OpenedDatastore> {
  const clock = o.clock ?? realClock;
  if (setting.kind === 'sqlite') {
    const store = await openSqliteStore(path.join(o.dataDir, SQLITE_FILE), { clock, ...(o.crashHook ? { crashHook: o.crashHook } : {}) });
    return {
      store,
      lifecycleStore: new SqliteLifecycleStore(store.db),
      readAuditChain: (options) => readAuditChain(store.db, options),
      postgres: null,
    };
  }
  const store = await openPostgresStore(setting.url, {
    clock,
    ...(o.onConnectionError ? { onIdleError: o.onConnectionError } : {}),
    ...(o.crashHook ? { crashHook: o.crashHook } : {}),
  });
  return {
    store,
    lifecycleStore: new PostgresLifecycleStore(store.db),
    readAuditChain: (options) => store.readAuditChain(options),
    postgres: store,
  };
}
