import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Db } from '../ca/store/db.js';
import { MIGRATIONS, SCHEMA_VERSION, migrate, type Migration } from '../ca/store/migrations.js';
import { openSqliteStore, type SqliteStore } from '../ca/store/sqlite.js';
import { StoreError, type AuditRecord } from '../ca/store/store.js';

// What every store must do is in test/support/store-contract.ts (run on
// SQLite and PostgreSQL by store-contract.test.ts); this file keeps what
// only the SQLite file has: modes, WAL, the migration runner on a Db,
// the query plan, file locks and read-only files.

// Raw access to the file, independent of the store, to inspect and tamper.
function rawOpen(file: string): Promise<sqlite3.Database> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READWRITE, (err) => (err ? reject(err) : resolve(db)));
  });
}
function rawAll<T>(db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<T[]> {
  return new Promise((resolve, reject) => db.all<T>(sql, params, (err, rows) => (err ? reject(err) : resolve(rows))));
}
function rawRun(db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<void> {
  return new Promise((resolve, reject) => db.run(sql, params, (err: Error | null) => (err ? reject(err) : resolve())));
}
function rawClose(db: sqlite3.Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
}

async function expectStoreError(p: Promise<unknown>, code: StoreError['code']): Promise<StoreError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreError);
  expect((err as StoreError).code).toBe(code);
  return err as StoreError;
}

function audit(i: number, over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    timeMs: 1_700_000_000_000 + i,
    caller: 'admin:uid=0',
    action: 'x509.mint',
    spiffeId: `spiffe://example.org/w/${i}`,
    serial: i.toString(16),
    notAfter: 1_700_003_600,
    outcome: 'success',
    detail: null,
    ...over,
  };
}

/** Root bypasses file modes, so a read-only file also needs the immutable attribute. */
function canMakeReadOnly(): boolean {
  if (process.getuid?.() !== 0) return true;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-chattr-'));
  const probe = path.join(dir, 'probe');
  fs.writeFileSync(probe, '');
  try {
    execFileSync('chattr', ['+i', probe], { stdio: 'ignore' });
    execFileSync('chattr', ['-i', probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('SQLite store', () => {
  let dir: string;
  let file: string;
  const opened: SqliteStore[] = [];
  const undo: (() => void)[] = [];

  async function open(options?: Parameters<typeof openSqliteStore>[1]): Promise<SqliteStore> {
    const store = await openSqliteStore(file, options);
    opened.push(store);
    return store;
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-store-'));
    file = path.join(dir, 'ca.sqlite');
  });

  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    for (const fn of undo.splice(0)) fn();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('opening', () => {
    it('creates the database file readable and writable by its owner only, WAL file too', async () => {
      const store = await open();
      await store.setMeta('k', 'v');
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(fs.statSync(`${file}-wal`).mode & 0o777).toBe(0o600);
    });

    it('removes group and other permissions from an existing database file', async () => {
      await (await open()).close();
      fs.chmodSync(file, 0o664);
      const store = await open();
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      await store.setMeta('still', 'works');
      expect(await store.getMeta('still')).toBe('works');
    });

    it('uses the WAL journal and records the applied migration', async () => {
      await (await open({ synchronous: 'NORMAL' })).close();
      const raw = await rawOpen(file);
      try {
        expect(await rawAll(raw, 'PRAGMA journal_mode')).toEqual([{ journal_mode: 'wal' }]);
        const rows = await rawAll<{ version: number }>(raw, 'SELECT version FROM schema_migrations ORDER BY version');
        expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
      } finally {
        await rawClose(raw);
      }
    });

    it('refuses a file that is not a SQLite database as corrupt', async () => {
      fs.writeFileSync(file, 'this is not a database, just some text that is long enough'.repeat(20), { mode: 0o600 });
      await expectStoreError(openSqliteStore(file), 'CORRUPT');
    });

    it('reports a missing parent directory as an IO error', async () => {
      await expectStoreError(openSqliteStore(path.join(dir, 'missing', 'ca.sqlite')), 'IO');
    });
  });

  describe('migrations', () => {
    const extra: Migration = { version: SCHEMA_VERSION + 1, name: 'add notes', sql: 'CREATE TABLE notes (n TEXT) STRICT;' };

    it('applies a later migration to an existing database once', async () => {
      await (await open()).close();
      const db = await Db.open(file, { busyTimeoutMs: 1000 });
      try {
        await migrate(db, () => 42, [...MIGRATIONS, extra]);
        await migrate(db, () => 43, [...MIGRATIONS, extra]);
        const rows = await db.exclusive((s) => s.all<{ version: number; applied_at_ms: number }>(
          'SELECT version, applied_at_ms FROM schema_migrations WHERE version = ?', [extra.version]));
        expect(rows).toEqual([{ version: extra.version, applied_at_ms: 42 }]);
      } finally {
        await db.close();
      }
    });

    it('rolls back a failing migration entirely, leaving the previous version', async () => {
      await (await open()).close();
      const broken: Migration = { version: SCHEMA_VERSION + 1, name: 'broken', sql: 'CREATE TABLE half (x TEXT); SELECT * FROM no_such_table;' };
      const db = await Db.open(file, { busyTimeoutMs: 1000 });
      try {
        await expect(migrate(db, () => 0, [...MIGRATIONS, broken])).rejects.toBeInstanceOf(StoreError);
        const tables = await db.exclusive((s) => s.all("SELECT name FROM sqlite_master WHERE name = 'half'"));
        expect(tables).toEqual([]);
        const max = await db.exclusive((s) => s.get<{ v: number }>('SELECT max(version) AS v FROM schema_migrations'));
        expect(max?.v).toBe(SCHEMA_VERSION);
      } finally {
        await db.close();
      }
    });
  });

  describe('registration entries', () => {
    it('looks entries up by parent through an index', async () => {
      await (await open()).close();
      const raw = await rawOpen(file);
      try {
        const plan = await rawAll<{ detail: string }>(
          raw,
          'EXPLAIN QUERY PLAN SELECT id FROM entries WHERE parent_id IN (SELECT value FROM json_each(?))',
          ['["x"]'],
        );
        expect(plan.map((p) => p.detail).join('\n')).toMatch(/USING (COVERING )?INDEX entries_parent_id/);
      } finally {
        await rawClose(raw);
      }
    });

  });

  describe('locks and read-only files', () => {
    it('reports a write lock held too long by another process as an IO error and recovers', async () => {
      const store = await open({ busyTimeoutMs: 50 });
      const raw = await rawOpen(file);
      try {
        await rawRun(raw, 'BEGIN IMMEDIATE');
        const err = await expectStoreError(store.appendAudit([audit(1)]), 'IO');
        expect((err.cause as { code?: string }).code).toBe('SQLITE_BUSY');
        await expectStoreError(store.setMeta('k', 'v'), 'IO');
        await rawRun(raw, 'COMMIT');
      } finally {
        await rawClose(raw);
      }
      await store.appendAudit([audit(2)]);
      expect((await store.listAudit()).map((r) => r.serial)).toEqual(['2']);
    });

    it.skipIf(!canMakeReadOnly())('reports writes to a read-only database file as IO errors and keeps reading', async () => {
      const first = await open();
      await first.setMeta('k', 'v');
      await first.close();
      fs.chmodSync(file, 0o400);
      if (process.getuid?.() === 0) {
        execFileSync('chattr', ['+i', file]);
        undo.push(() => execFileSync('chattr', ['-i', file]));
      }
      const store = await open();
      expect(await store.getMeta('k')).toBe('v');
      const err = await expectStoreError(store.setMeta('k', 'w'), 'IO');
      expect((err.cause as { code?: string }).code).toBe('SQLITE_READONLY');
      await expectStoreError(store.appendAudit([audit(1), audit(2)]), 'IO');
      await expectStoreError(store.consumeJoinToken('hash-none', 1), 'IO');
      expect(await store.getMeta('k')).toBe('v');
      expect(await store.listAudit()).toEqual([]);
    });
  });
});
