/**
 * What only the PostgreSQL store has: its migrations mirror SQLite's,
 * several servers migrate one database at once, connection failures and
 * killed connections. The behaviour shared with SQLite is in
 * store-contract.test.ts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_HASH, auditRecordHash } from '../ca/audit/audit-hash.js';
import { MIGRATIONS, type Migration } from '../ca/store/migrations.js';
import { PG_MIGRATIONS, migratePg } from '../ca/store/pg-migrations.js';
import { PgDb } from '../ca/store/postgres-db.js';
import { isPostgresUrl, openPostgresStore, type PostgresStore } from '../ca/store/postgres.js';
import { StoreError, type AuditRecord } from '../ca/store/store.js';
import { startTestPostgres, type TestPostgres } from './support/postgres.js';

describe('PostgreSQL store', () => {
  let server: TestPostgres;
  const opened: { close(): Promise<void> }[] = [];
  beforeAll(async () => {
    server = await startTestPostgres();
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  });
  afterAll(() => server.stop());

  async function open(url: string): Promise<PostgresStore> {
    const s = await openPostgresStore(url);
    opened.push(s);
    return s;
  }

  it('has a migration for every SQLite migration, with the same version and name', () => {
    expect(PG_MIGRATIONS.map((m) => [m.version, m.name])).toEqual(MIGRATIONS.map((m) => [m.version, m.name]));
  });

  it('migrates an empty database exactly once when five servers open it at the same moment', async () => {
    const url = await server.createDatabase();
    const stores = await Promise.all(Array.from({ length: 5 }, () => open(url)));
    const rows = await server.sql<{ version: number }>(url, 'SELECT version FROM schema_migrations ORDER BY version');
    expect(rows.map((r) => Number(r.version))).toEqual(PG_MIGRATIONS.map((m) => m.version));
    await stores[3]!.setMeta('k', 'v');
    expect(await stores[0]!.getMeta('k')).toBe('v');
  });

  it('applies a later migration to an existing database once, and rolls back a failing one entirely', async () => {
    const url = await server.createDatabase();
    await (await open(url)).close();
    const next = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.version + 1;
    const extra: Migration = { version: next, name: 'add notes', sql: 'CREATE TABLE notes (n TEXT)' };
    const db = await PgDb.open(url);
    opened.push(db);
    await migratePg(db, () => 42, [...PG_MIGRATIONS, extra]);
    await migratePg(db, () => 43, [...PG_MIGRATIONS, extra]);
    expect(await db.query('SELECT version, applied_at_ms FROM schema_migrations WHERE version = $1', [next])).toEqual([{ version: next, applied_at_ms: 42 }]);

    const broken: Migration = { version: next + 1, name: 'broken', sql: 'CREATE TABLE half (x TEXT); SELECT * FROM no_such_table;' };
    await expect(migratePg(db, () => 0, [...PG_MIGRATIONS, extra, broken])).rejects.toBeInstanceOf(StoreError);
    expect(await db.query("SELECT to_regclass('half') AS t")).toEqual([{ t: null }]);
    expect(await db.query('SELECT max(version) AS v FROM schema_migrations')).toEqual([{ v: next }]);
  });

  it('has the database refuse a record that does not chain to the last one, whoever writes it', async () => {
    const url = await server.createDatabase();
    const store = await open(url);
    const record: AuditRecord = { timeMs: 1_000, caller: 'c', action: 'a', spiffeId: null, serial: '1', notAfter: 2, outcome: 'success', detail: null };
    await store.appendAudit([record]);
    const [last] = await server.sql<{ hash: string }>(url, 'SELECT hash FROM audit WHERE seq = 1');
    const insert = (seq: number, prevHash: string) => {
      const r = { ...record, serial: String(seq) };
      return server.sql(
        url,
        'INSERT INTO audit (seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)',
        [seq, r.timeMs, r.caller, r.action, r.spiffeId, r.serial, r.notAfter, r.outcome, r.detail, prevHash, auditRecordHash(seq, r, prevHash)],
      );
    };
    await expect(insert(2, GENESIS_HASH)).rejects.toThrow(/must chain to the last record/);
    expect((await store.listAudit()).map((r) => r.serial)).toEqual(['1']);
    await insert(2, last!.hash);
    await store.appendAudit([{ ...record, serial: '3' }, { ...record, serial: '4' }]);
    expect((await store.listAudit()).map((r) => r.serial)).toEqual(['1', '2', '3', '4']);
  });

  it('reads 64-bit columns back as numbers, milliseconds included', async () => {
    const store = await open(await server.createDatabase());
    const timeMs = 4_102_444_800_123; // 2100-01-01
    await store.appendAudit([{ timeMs, caller: 'c', action: 'a', spiffeId: null, serial: null, notAfter: 4_102_444_800, outcome: 'success', detail: null }]);
    const [r] = await store.listAudit();
    expect(r).toMatchObject({ seq: 1, timeMs, notAfter: 4_102_444_800 });
    expect(typeof r!.seq).toBe('number');
  });

  it('reports an unreachable server as an IO error without the password in the message', async () => {
    const err = await openPostgresStore('postgres://brevis:s3cret-pw@127.0.0.1:1/none', { connectTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('IO');
    expect((err as StoreError).message).not.toContain('s3cret-pw');
    expect((err as StoreError).message).toContain('127.0.0.1:1');
  });

  it('accepts only postgres:// and postgresql:// URLs', async () => {
    expect(isPostgresUrl('postgres://h/db')).toBe(true);
    expect(isPostgresUrl('postgresql://h/db')).toBe(true);
    expect(isPostgresUrl('/var/lib/brevis/brevis.db')).toBe(false);
    await expect(openPostgresStore('mysql://h/db')).rejects.toMatchObject({ code: 'IO' });
  });

  it('carries on with new connections after the server killed all of its connections', async () => {
    const url = await server.createDatabase();
    const store = await open(url);
    await store.setMeta('k', 'before');
    await server.sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'brevis-ca' AND pid <> pg_backend_pid()");
    // The first call may meet a dead pooled connection (an IO error); the pool replaces it.
    let value: string | undefined;
    for (let i = 0; i < 5 && value === undefined; i++) {
      value = await store.getMeta('k').catch((e: unknown) => {
        expect((e as StoreError).code).toBe('IO');
        return undefined;
      });
    }
    expect(value).toBe('before');
  });
});
