import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_HASH, auditRecordHash, canonicalAuditBytes } from '../ca/audit/audit-hash.js';
import { readAuditChain } from '../ca/audit/sqlite-audit-chain.js';
import { verifyAuditChain } from '../ca/audit/verify-chain.js';
import { openSqliteStore, type SqliteStore } from '../ca/store/sqlite.js';
import type { AuditRecord } from '../ca/store/store.js';

function rawOpen(file: string): Promise<sqlite3.Database> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READWRITE, (err) => (err ? reject(err) : resolve(db)));
  });
}
function rawRun(db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<void> {
  return new Promise((resolve, reject) => db.run(sql, params, (err: Error | null) => (err ? reject(err) : resolve())));
}
function rawClose(db: sqlite3.Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
}

/** Edits the database file directly, as an attacker with file access would: triggers dropped first. */
async function tamper(file: string, ...statements: string[]): Promise<void> {
  const raw = await rawOpen(file);
  try {
    await rawRun(raw, 'DROP TRIGGER IF EXISTS audit_no_update');
    await rawRun(raw, 'DROP TRIGGER IF EXISTS audit_no_delete');
    for (const sql of statements) await rawRun(raw, sql);
  } finally {
    await rawClose(raw);
  }
}

function rec(i: number, over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    timeMs: 1_700_000_000_000 + i,
    caller: 'admin:local',
    action: 'x509.mint',
    spiffeId: `spiffe://example.org/w/${i}`,
    serial: i.toString(16),
    notAfter: 1_700_003_600,
    outcome: 'success',
    detail: i % 2 ? null : `entry e${i}`,
    ...over,
  };
}

describe('audit hash chain', () => {
  let dir: string;
  let file: string;
  let store: SqliteStore | undefined;
  const verify = (s: SqliteStore) => verifyAuditChain((afterSeq, limit) => readAuditChain(s.db, { afterSeq, limit }));

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-audit-'));
    file = path.join(dir, 'brevis.db');
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function filled(n: number): Promise<SqliteStore> {
    const s = await openSqliteStore(file);
    await s.appendAudit(Array.from({ length: n }, (_, i) => rec(i + 1)));
    return s;
  }

  it('encodes records canonically: every field and the previous hash change the hash, and null differs from empty text', () => {
    const base = rec(1, { detail: null });
    const h = auditRecordHash(1, base, GENESIS_HASH);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(auditRecordHash(1, { ...base }, GENESIS_HASH)).toBe(h);
    expect(auditRecordHash(2, base, GENESIS_HASH)).not.toBe(h);
    expect(auditRecordHash(1, base, 'f'.repeat(64))).not.toBe(h);
    for (const k of ['timeMs', 'caller', 'action', 'spiffeId', 'serial', 'notAfter', 'outcome'] as const) {
      const v = base[k];
      const changed = { ...base, [k]: typeof v === 'number' ? v + 1 : `${v}x` } as AuditRecord;
      expect(auditRecordHash(1, changed, GENESIS_HASH), k).not.toBe(h);
    }
    expect(auditRecordHash(1, { ...base, detail: '' }, GENESIS_HASH)).not.toBe(h);
    // Field boundaries are length-prefixed: moving text from one field to the next changes the bytes.
    const a = canonicalAuditBytes(1, { ...base, caller: 'ab', action: 'c' }, GENESIS_HASH);
    const b = canonicalAuditBytes(1, { ...base, caller: 'a', action: 'bc' }, GENESIS_HASH);
    expect(a.equals(b)).toBe(false);
  });

  it('chains each record to the one before it, starting from the genesis hash', async () => {
    store = await filled(5);
    const chain = await readAuditChain(store.db);
    expect(chain.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(chain[0]!.prevHash).toBe(GENESIS_HASH);
    for (let i = 1; i < chain.length; i++) expect(chain[i]!.prevHash).toBe(chain[i - 1]!.hash);
    for (const r of chain) expect(r.hash).toBe(auditRecordHash(r.seq, r, r.prevHash));
    expect(await verify(store)).toEqual({ intact: true, count: 5, headSeq: 5, headHash: chain[4]!.hash });
  });

  it('chains concurrent appends correctly (they serialize under the write lock)', async () => {
    store = await openSqliteStore(file);
    const s = store;
    await Promise.all(Array.from({ length: 40 }, (_, i) => s.appendAudit([rec(2 * i), rec(2 * i + 1)])));
    const verdict = await verify(s);
    expect(verdict).toMatchObject({ intact: true, count: 80 });
  });

  it('chains appends from two connections to the same file', async () => {
    store = await openSqliteStore(file);
    const other = await openSqliteStore(file);
    try {
      const s = store;
      await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? s : other).appendAudit([rec(i)])));
    } finally {
      await other.close();
    }
    expect(await verify(store)).toMatchObject({ intact: true, count: 20 });
  });

  it('verifies an empty trail as intact with zero records', async () => {
    store = await openSqliteStore(file);
    expect(await verify(store)).toEqual({ intact: true, count: 0, headSeq: 0, headHash: GENESIS_HASH });
  });

  it('detects an edited record and names it', async () => {
    await (await filled(6)).close();
    await tamper(file, "UPDATE audit SET detail = 'nothing to see' WHERE seq = 4");
    store = await openSqliteStore(file);
    const v = await verify(store);
    expect(v).toMatchObject({ intact: false, brokenSeq: 4, count: 3 });
    expect(v.intact === false && v.reason).toMatch(/edited/);
  });

  it('detects an edited record whose hash was recomputed, at the record after it', async () => {
    await (await filled(6)).close();
    const raw = await rawOpen(file);
    const row = await new Promise<AuditRecord & { prev_hash: string }>((resolve, reject) =>
      raw.get('SELECT time_ms AS timeMs, caller, action, spiffe_id AS spiffeId, serial, not_after AS notAfter, outcome, detail, prev_hash FROM audit WHERE seq = 4', (e, r) =>
        e ? reject(e) : resolve(r as AuditRecord & { prev_hash: string }),
      ),
    );
    await rawClose(raw);
    const forged = auditRecordHash(4, { ...row, outcome: 'failure' }, row.prev_hash);
    await tamper(file, `UPDATE audit SET outcome = 'failure', hash = '${forged}' WHERE seq = 4`);
    store = await openSqliteStore(file);
    expect(await verify(store)).toMatchObject({ intact: false, brokenSeq: 5, count: 4 });
  });

  it('detects a deleted record at the record that followed it', async () => {
    await (await filled(6)).close();
    await tamper(file, 'DELETE FROM audit WHERE seq = 3');
    store = await openSqliteStore(file);
    const v = await verify(store);
    expect(v).toMatchObject({ intact: false, brokenSeq: 4, count: 2 });
    expect(v.intact === false && v.reason).toMatch(/deleted.*records 3\.\.3 are missing/);
  });

  it('detects reordered records (positions swapped)', async () => {
    await (await filled(6)).close();
    await tamper(file, 'UPDATE audit SET seq = 100 WHERE seq = 2', 'UPDATE audit SET seq = 2 WHERE seq = 5', 'UPDATE audit SET seq = 5 WHERE seq = 100');
    store = await openSqliteStore(file);
    const v = await verify(store);
    expect(v).toMatchObject({ intact: false, brokenSeq: 2, count: 1 });
    expect(v.intact === false && v.reason).toMatch(/reordered/);
  });

  it('never reuses a sequence number after the newest records were deleted, and flags the gap', async () => {
    await (await filled(4)).close();
    await tamper(file, 'DELETE FROM audit WHERE seq >= 3');
    store = await openSqliteStore(file);
    await store.appendAudit([rec(9)]);
    const chain = await readAuditChain(store.db);
    expect(chain.map((r) => r.seq)).toEqual([1, 2, 5]);
    // The new record chains to the last one still present: the gap gives the deletion away.
    const v = await verify(store);
    expect(v).toMatchObject({ intact: false, brokenSeq: 5, count: 2 });
    expect(v.intact === false && v.reason).toMatch(/records 3\.\.4 are missing/);
  });

  it('chains records written before the chain existed when an old database is opened', async () => {
    await (await filled(3)).close();
    // Simulate a pre-chain database: no hashes on the existing rows.
    await tamper(file, 'UPDATE audit SET prev_hash = NULL, hash = NULL');
    store = await openSqliteStore(file);
    await store.appendAudit([rec(4)]);
    expect(await verify(store)).toMatchObject({ intact: true, count: 4 });
  });

  it('still refuses UPDATE of a chained record and DELETE at the database level', async () => {
    await (await filled(2)).close();
    const raw = await rawOpen(file);
    try {
      await expect(rawRun(raw, "UPDATE audit SET detail = 'x' WHERE seq = 1")).rejects.toThrow(/append-only/);
      await expect(rawRun(raw, "UPDATE audit SET hash = NULL WHERE seq = 1")).rejects.toThrow(/append-only/);
      await expect(rawRun(raw, 'DELETE FROM audit')).rejects.toThrow(/append-only/);
    } finally {
      await rawClose(raw);
    }
  });
});
