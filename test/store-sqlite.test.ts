import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Db } from '../ca/store/db.js';
import { MIGRATIONS, SCHEMA_VERSION, migrate, type Migration } from '../ca/store/migrations.js';
import { openSqliteStore, type SqliteStore } from '../ca/store/sqlite.js';
import {
  StoreError,
  type AgentRecord,
  type AuditRecord,
  type AuthorityRecord,
  type JoinTokenRecord,
  type NewEntry,
} from '../ca/store/store.js';

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

function entry(id: string, over: Partial<NewEntry> = {}): NewEntry {
  return {
    id,
    spiffeId: `spiffe://example.org/workload/${id}`,
    parentId: 'spiffe://example.org/spire/agent/join_token/t1',
    selectors: [{ type: 'unix', value: 'uid:1000' }],
    x509SvidTtl: 0,
    dnsNames: [],
    hint: '',
    admin: false,
    expiresAt: null,
    ...over,
  };
}

function token(id: string, over: Partial<JoinTokenRecord> = {}): JoinTokenRecord {
  return {
    id,
    secretHash: `hash-${id}`,
    agentId: `spiffe://example.org/spire/agent/join_token/${id}`,
    expiresAt: 2_000,
    usedAt: null,
    createdAt: 1_000,
    ...over,
  };
}

function agent(agentId: string, over: Partial<AgentRecord> = {}): AgentRecord {
  return {
    agentId,
    attestationType: 'join_token',
    serial: '0a1b',
    expiresAt: 5_000,
    selectors: [{ type: 'join_token', value: 't1' }],
    banned: false,
    createdAt: 1_000,
    lastSeenAt: 1_000,
    ...over,
  };
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

function authority(id: string, over: Partial<AuthorityRecord> = {}): AuthorityRecord {
  return {
    id,
    kind: 'x509-root',
    state: 'active',
    publicDer: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]),
    parentId: null,
    keyRef: `${id}.key`,
    notBefore: 1_000,
    notAfter: 9_000,
    createdAt: 1_000,
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

    it('refuses a database whose schema is newer than the code, saying so', async () => {
      await (await open()).close();
      const raw = await rawOpen(file);
      await rawRun(raw, 'INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)', [
        SCHEMA_VERSION + 1,
        'from the future',
        0,
      ]);
      await rawClose(raw);
      const err = await expectStoreError(openSqliteStore(file), 'CORRUPT');
      expect(err.message).toContain(`schema version ${SCHEMA_VERSION + 1} is newer`);
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
    it('creates an entry at revision 1 with selectors sorted by type then value and deduplicated', async () => {
      const store = await open();
      const created = await store.createEntry(
        entry('e1', {
          selectors: [
            { type: 'unix', value: 'uid:1000' },
            { type: 'k8s', value: 'ns:prod' },
            { type: 'unix', value: 'gid:10' },
            { type: 'k8s', value: 'ns:prod' },
          ],
          dnsNames: ['b.example.org', 'a.example.org'],
          x509SvidTtl: 600,
          hint: 'db',
          admin: true,
          expiresAt: 99_999,
        }),
        1_234,
      );
      const expected = {
        id: 'e1',
        spiffeId: 'spiffe://example.org/workload/e1',
        parentId: 'spiffe://example.org/spire/agent/join_token/t1',
        selectors: [
          { type: 'k8s', value: 'ns:prod' },
          { type: 'unix', value: 'gid:10' },
          { type: 'unix', value: 'uid:1000' },
        ],
        x509SvidTtl: 600,
        dnsNames: ['b.example.org', 'a.example.org'],
        hint: 'db',
        admin: true,
        expiresAt: 99_999,
        revision: 1,
        createdAt: 1_234,
      };
      expect(created).toEqual(expected);
      expect(await store.getEntry('e1')).toEqual(expected);
    });

    it('returns undefined for an unknown entry', async () => {
      const store = await open();
      expect(await store.getEntry('nope')).toBeUndefined();
    });

    it('refuses a second entry with the same id as a conflict and keeps the first', async () => {
      const store = await open();
      await store.createEntry(entry('dup', { hint: 'first' }), 1);
      const err = await expectStoreError(store.createEntry(entry('dup', { hint: 'second' }), 2), 'CONFLICT');
      expect(err.message).toContain('dup');
      expect((await store.getEntry('dup'))?.hint).toBe('first');
    });

    it('lists all entries, and the entries of any of several parents', async () => {
      const store = await open();
      await store.createEntry(entry('c', { parentId: 'spiffe://example.org/agent/a' }), 1);
      await store.createEntry(entry('a', { parentId: 'spiffe://example.org/agent/b' }), 1);
      await store.createEntry(entry('b', { parentId: 'spiffe://example.org/agent/c' }), 1);
      expect((await store.listEntries()).map((e) => e.id)).toEqual(['a', 'b', 'c']);
      const some = await store.listEntriesByParents(['spiffe://example.org/agent/a', 'spiffe://example.org/agent/c', 'unknown']);
      expect(some.map((e) => e.id)).toEqual(['b', 'c']);
      expect(await store.listEntriesByParents([])).toEqual([]);
    });

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

    it('deletes an entry and says whether it existed', async () => {
      const store = await open();
      await store.createEntry(entry('gone'), 1);
      expect(await store.deleteEntry('gone')).toBe(true);
      expect(await store.getEntry('gone')).toBeUndefined();
      expect(await store.deleteEntry('gone')).toBe(false);
    });
  });

  describe('join tokens', () => {
    it('consumes a valid token once, returning it marked used, then reports it used', async () => {
      const store = await open();
      await store.createJoinToken(token('t1'));
      expect(await store.consumeJoinToken('hash-t1', 1_500)).toEqual({ ok: true, token: token('t1', { usedAt: 1_500 }) });
      expect(await store.consumeJoinToken('hash-t1', 1_501)).toEqual({ ok: false, reason: 'used' });
    });

    it('reports an unknown secret as unknown', async () => {
      const store = await open();
      await store.createJoinToken(token('t1'));
      expect(await store.consumeJoinToken('hash-other', 1_500)).toEqual({ ok: false, reason: 'unknown' });
    });

    it('treats a token as expired from its expiry second on, and leaves it unused', async () => {
      const store = await open();
      await store.createJoinToken(token('t1', { expiresAt: 2_000 }));
      expect(await store.consumeJoinToken('hash-t1', 2_000)).toEqual({ ok: false, reason: 'expired' });
      expect(await store.consumeJoinToken('hash-t1', 1_999)).toMatchObject({ ok: true });
    });

    it('refuses two tokens with the same secret hash as a conflict', async () => {
      const store = await open();
      await store.createJoinToken(token('t1', { secretHash: 'same' }));
      await expectStoreError(store.createJoinToken(token('t2', { secretHash: 'same' })), 'CONFLICT');
    });

    it('lets exactly one of 20 concurrent consumers of the same token succeed', async () => {
      const store = await open();
      await store.createJoinToken(token('t1'));
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.consumeJoinToken('hash-t1', 1_100 + i)));
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.filter((r) => !r.ok && r.reason === 'used')).toHaveLength(19);
    });

    it('lets exactly one of two stores on the same file consume a token', async () => {
      const a = await open();
      const b = await open();
      await a.createJoinToken(token('t1'));
      const results = await Promise.all([
        ...Array.from({ length: 10 }, () => a.consumeJoinToken('hash-t1', 1_100)),
        ...Array.from({ length: 10 }, () => b.consumeJoinToken('hash-t1', 1_100)),
      ]);
      expect(results.filter((r) => r.ok)).toHaveLength(1);
    });
  });

  describe('agents', () => {
    it('stores an agent with sorted selectors and lists agents by id', async () => {
      const store = await open();
      await store.upsertAgent(agent('spiffe://example.org/agent/b'));
      await store.upsertAgent(
        agent('spiffe://example.org/agent/a', {
          attestationType: 'x509pop',
          selectors: [
            { type: 'x509pop', value: 'subject:cn:b' },
            { type: 'x509pop', value: 'subject:cn:a' },
          ],
        }),
      );
      const a = await store.getAgent('spiffe://example.org/agent/a');
      expect(a).toEqual(
        agent('spiffe://example.org/agent/a', {
          attestationType: 'x509pop',
          selectors: [
            { type: 'x509pop', value: 'subject:cn:a' },
            { type: 'x509pop', value: 'subject:cn:b' },
          ],
        }),
      );
      expect((await store.listAgents()).map((x) => x.agentId)).toEqual([
        'spiffe://example.org/agent/a',
        'spiffe://example.org/agent/b',
      ]);
      expect(await store.getAgent('spiffe://example.org/agent/none')).toBeUndefined();
    });

    it('replaces an agent record on re-attestation', async () => {
      const store = await open();
      const id = 'spiffe://example.org/agent/a';
      await store.upsertAgent(agent(id));
      await store.upsertAgent(agent(id, { serial: 'ff', expiresAt: 8_000, lastSeenAt: 3_000 }));
      expect(await store.getAgent(id)).toEqual(agent(id, { serial: 'ff', expiresAt: 8_000, lastSeenAt: 3_000 }));
    });

    it('keeps a ban through a later upsert', async () => {
      const store = await open();
      const id = 'spiffe://example.org/agent/a';
      await store.upsertAgent(agent(id));
      expect(await store.banAgent(id)).toBe(true);
      await store.upsertAgent(agent(id, { banned: false, serial: 'ff' }));
      expect(await store.getAgent(id)).toMatchObject({ banned: true, serial: 'ff' });
      expect(await store.banAgent('spiffe://example.org/agent/none')).toBe(false);
    });

    it('pins a renewed SVID serial and records when the agent was seen', async () => {
      const store = await open();
      const id = 'spiffe://example.org/agent/a';
      await store.upsertAgent(agent(id));
      expect(await store.updateAgentSvid(id, 'beef', 9_000, 4_000)).toBe(true);
      expect(await store.getAgent(id)).toMatchObject({ serial: 'beef', expiresAt: 9_000, lastSeenAt: 4_000 });
      await store.touchAgent(id, 4_500);
      expect((await store.getAgent(id))?.lastSeenAt).toBe(4_500);
      expect(await store.updateAgentSvid('spiffe://example.org/agent/none', 'beef', 9_000, 4_000)).toBe(false);
      await store.touchAgent('spiffe://example.org/agent/none', 4_500);
      expect(await store.getAgent('spiffe://example.org/agent/none')).toBeUndefined();
    });

    it('deletes an agent and says whether it existed', async () => {
      const store = await open();
      const id = 'spiffe://example.org/agent/a';
      await store.upsertAgent(agent(id));
      expect(await store.deleteAgent(id)).toBe(true);
      expect(await store.getAgent(id)).toBeUndefined();
      expect(await store.deleteAgent(id)).toBe(false);
    });
  });

  describe('audit', () => {
    it('appends records with increasing sequence numbers and lists them oldest first', async () => {
      const store = await open();
      await store.appendAudit([audit(1), audit(2, { outcome: 'failure', detail: 'policy', spiffeId: null, serial: null, notAfter: null })]);
      await store.appendAudit([audit(3, { seq: 1 })]); // a caller's seq is ignored
      const all = await store.listAudit();
      expect(all).toEqual([
        { ...audit(1), seq: 1 },
        { ...audit(2, { outcome: 'failure', detail: 'policy', spiffeId: null, serial: null, notAfter: null }), seq: 2 },
        { ...audit(3), seq: 3 },
      ]);
    });

    it('filters audit records by time and limits how many are returned', async () => {
      const store = await open();
      await store.appendAudit([audit(1), audit(2), audit(3), audit(4)]);
      expect((await store.listAudit({ sinceMs: audit(2).timeMs })).map((r) => r.serial)).toEqual(['2', '3', '4']);
      expect((await store.listAudit({ limit: 2 })).map((r) => r.serial)).toEqual(['1', '2']);
      expect((await store.listAudit({ sinceMs: audit(3).timeMs, limit: 1 })).map((r) => r.serial)).toEqual(['3']);
    });

    it('appends 1000 records in one call', async () => {
      const store = await open();
      const records = Array.from({ length: 1000 }, (_, i) => audit(i));
      await store.appendAudit(records);
      const listed = await store.listAudit();
      expect(listed).toHaveLength(1000);
      expect(listed[999]).toEqual({ ...audit(999), seq: 1000 });
    });

    it('writes none of a batch when one record in it is refused', async () => {
      const store = await open();
      const bad = audit(3, { outcome: 'maybe' as AuditRecord['outcome'] });
      await expectStoreError(store.appendAudit([audit(1), audit(2), bad]), 'CONFLICT');
      expect(await store.listAudit()).toEqual([]);
    });

    it('keeps a concurrent write out of a batch that is rolled back', async () => {
      const store = await open();
      const bad = audit(300, { outcome: 'maybe' as AuditRecord['outcome'] });
      const batch = [...Array.from({ length: 299 }, (_, i) => audit(i)), bad];
      const [failed, created] = await Promise.allSettled([
        store.appendAudit(batch),
        store.createEntry(entry('during'), 1),
        store.setMeta('during', 'yes'),
      ]);
      expect(failed.status).toBe('rejected');
      expect(created.status).toBe('fulfilled');
      expect(await store.getEntry('during')).toBeDefined();
      expect(await store.getMeta('during')).toBe('yes');
      expect(await store.listAudit()).toEqual([]);
    });

    it('refuses UPDATE and DELETE of audit rows at the database level', async () => {
      const store = await open();
      await store.appendAudit([audit(1)]);
      await store.close();
      const raw = await rawOpen(file);
      try {
        await expect(rawRun(raw, "UPDATE audit SET outcome = 'failure'")).rejects.toThrow(/append-only/);
        await expect(rawRun(raw, 'DELETE FROM audit')).rejects.toThrow(/append-only/);
        expect(await rawAll(raw, 'SELECT outcome FROM audit')).toEqual([{ outcome: 'success' }]);
      } finally {
        await rawClose(raw);
      }
    });
  });

  describe('authorities', () => {
    it('stores authorities, lists them by kind, and replaces one put again', async () => {
      const store = await open();
      await store.putAuthority(authority('root1'));
      await store.putAuthority(authority('int1', { kind: 'x509-intermediate', parentId: 'root1', notBefore: 2_000 }));
      await store.putAuthority(authority('ssh1', { kind: 'ssh-user', publicDer: Buffer.from('ssh-blob') }));
      expect(await store.listAuthorities('x509-intermediate')).toEqual([
        authority('int1', { kind: 'x509-intermediate', parentId: 'root1', notBefore: 2_000 }),
      ]);
      const all = await store.listAuthorities();
      expect(all.map((a) => a.id).sort()).toEqual(['int1', 'root1', 'ssh1']);
      expect(Buffer.isBuffer(all.find((a) => a.id === 'ssh1')?.publicDer)).toBe(true);
      expect(all.find((a) => a.id === 'ssh1')?.publicDer.toString()).toBe('ssh-blob');

      await store.putAuthority(authority('root1', { state: 'retired', keyRef: 'other.key' }));
      expect(await store.listAuthorities('x509-root')).toEqual([authority('root1', { state: 'retired', keyRef: 'other.key' })]);
    });

    it('changes an authority state and says whether it existed', async () => {
      const store = await open();
      await store.putAuthority(authority('root1', { state: 'prepared' }));
      expect(await store.setAuthorityState('root1', 'active')).toBe(true);
      expect((await store.listAuthorities())[0]?.state).toBe('active');
      expect(await store.setAuthorityState('none', 'active')).toBe(false);
    });
  });

  describe('meta', () => {
    it('sets, overwrites and reads small values', async () => {
      const store = await open();
      expect(await store.getMeta('bundle_sequence')).toBeUndefined();
      await store.setMeta('bundle_sequence', '1');
      await store.setMeta('bundle_sequence', '2');
      expect(await store.getMeta('bundle_sequence')).toBe('2');
    });
  });

  describe('lifecycle', () => {
    it('keeps everything across close and reopen', async () => {
      const first = await open();
      await first.createEntry(entry('e1'), 10);
      await first.createJoinToken(token('t1'));
      await first.consumeJoinToken('hash-t1', 1_500);
      await first.upsertAgent(agent('spiffe://example.org/agent/a'));
      await first.appendAudit([audit(1)]);
      await first.putAuthority(authority('root1'));
      await first.setMeta('k', 'v');
      await first.close();

      const second = await open();
      expect(await second.getEntry('e1')).toEqual({ ...entry('e1'), revision: 1, createdAt: 10 });
      expect(await second.consumeJoinToken('hash-t1', 1_600)).toEqual({ ok: false, reason: 'used' });
      expect(await second.getAgent('spiffe://example.org/agent/a')).toEqual(agent('spiffe://example.org/agent/a'));
      expect(await second.listAudit()).toEqual([{ ...audit(1), seq: 1 }]);
      expect(await second.listAuthorities()).toEqual([authority('root1')]);
      expect(await second.getMeta('k')).toBe('v');
    });

    it('finishes work already queued when closed, then refuses calls as closed', async () => {
      const store = await open();
      const pending = store.setMeta('k', 'v');
      const closing = store.close();
      await pending;
      await closing;
      await store.close(); // idempotent
      await expectStoreError(store.getMeta('k'), 'CLOSED');
      await expectStoreError(store.listEntriesByParents([]), 'CLOSED');
      await expectStoreError(store.appendAudit([audit(1)]), 'CLOSED');
      const reopened = await open();
      expect(await reopened.getMeta('k')).toBe('v');
    });

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
