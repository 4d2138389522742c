/**
 * The same store tests on both backends: SQLite in a temp dir, and
 * PostgreSQL on a throwaway server with a fresh database per test.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import sqlite3 from 'sqlite3';
import { readAuditChain } from '../ca/audit/sqlite-audit-chain.js';
import { MIGRATIONS } from '../ca/store/migrations.js';
import { PG_MIGRATIONS } from '../ca/store/pg-migrations.js';
import { openPostgresStore, type PostgresStore } from '../ca/store/postgres.js';
import { openSqliteStore, type SqliteStore } from '../ca/store/sqlite.js';
import { startTestPostgres, type TestPostgres } from './support/postgres.js';
import { describeStoreContract, type StoreHarness } from './support/store-contract.js';
import { describeLifecycleStorageContract } from './support/lifecycle-storage-contract.js';
import { SqliteLifecycleStore } from '../ca/rotation/lifecycle-store.js';
import { PostgresLifecycleStore } from '../ca/store/postgres-lifecycle.js';

function sqliteRaw(file: string, statements: string[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READWRITE, (err) => {
      if (err) return reject(err);
      let rows: unknown[] = [];
      const next = (i: number): void => {
        if (i === statements.length) return db.close(() => resolve(rows));
        db.all(statements[i]!, (e: Error | null, r: unknown[]) => {
          if (e) return db.close(() => reject(e));
          rows = r;
          next(i + 1);
        });
      };
      next(0);
    });
  });
}

let dir = '';
let file = '';
const sqlite: StoreHarness = {
  migrations: MIGRATIONS,
  async setup() {},
  async teardown() {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = '';
  },
  async fresh() {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-contract-'));
    file = path.join(dir, 'brevis.db');
  },
  open: () => openSqliteStore(file),
  readChain: (store, options) => readAuditChain((store as SqliteStore).db, options),
  raw: (sql) => sqliteRaw(file, [sql]),
  async tamper(...statements) {
    await sqliteRaw(file, ['DROP TRIGGER IF EXISTS audit_no_update', 'DROP TRIGGER IF EXISTS audit_no_delete', ...statements]);
  },
};
describeStoreContract('SQLite', sqlite);
describeLifecycleStorageContract('SQLite', { ...sqlite, lifecycle: (store) => new SqliteLifecycleStore((store as SqliteStore).db) });

let server: TestPostgres | undefined;
let url = '';
async function pgRaw(statements: string[]): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    let rows: unknown[] = [];
    for (const s of statements) rows = (await client.query(s)).rows;
    return rows;
  } finally {
    await client.end();
  }
}
const postgres: StoreHarness = {
  migrations: PG_MIGRATIONS,
  async setup() {
    server = await startTestPostgres();
  },
  async teardown() {
    await server?.stop();
  },
  async fresh() {
    url = await server!.createDatabase();
  },
  open: () => openPostgresStore(url),
  readChain: (store, options) => (store as PostgresStore).readAuditChain(options),
  raw: (sql) => pgRaw([sql]),
  async tamper(...statements) {
    await pgRaw(['DROP TRIGGER IF EXISTS audit_no_update ON audit', 'DROP TRIGGER IF EXISTS audit_no_delete ON audit', ...statements]);
  },
};
describeStoreContract('PostgreSQL', postgres);
describeLifecycleStorageContract('PostgreSQL', { ...postgres, lifecycle: (store) => new PostgresLifecycleStore((store as PostgresStore).db) });
