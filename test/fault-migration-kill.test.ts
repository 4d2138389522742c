/**
 * The CA killed with SIGKILL in the middle of a schema migration
 * (BREVIS_CRASH_AT=migrate:<version>:<step>, ca/crash-hook.ts), on a
 * database written at an older schema version with data in it. The killed
 * migration leaves nothing behind: the schema, the rows and
 * `schema_migrations` are exactly as before it (or, killed just after its
 * commit, exactly at the new version). The next start resumes from there:
 * every migration applied once, the old rows intact, the audit chain
 * verifies, and minting never reuses a serial.
 *
 * The older databases are built the way an older CA would have left them:
 * only the first K migrations applied, then rows of that version's shape
 * (entries, a used join token, an attested agent, audit records of a token,
 * an attestation and minted SVIDs). They hold no authorities: an authority
 * row is useless without its key file sealed under the CA's KEK, which only
 * the running CA writes; the CA creates its authorities at the first start
 * that gets past the migrations, as it would for an older database whose
 * data directory lost its keys. Every version K from 1 to 3 is used: 1 (no
 * SSH columns yet), 2 (audit records not yet hash-chained, chained at open
 * once migration 3 has run) and 3 (records already chained, before the
 * authority life cycle tables of migration 4).
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendChainedAudit } from '../ca/audit/sqlite-audit-chain.js';
import { Db } from '../ca/store/db.js';
import { MIGRATIONS, migrate } from '../ca/store/migrations.js';
import type { AuditRecord } from '../ca/store/store.js';
import { CA_BIN, requireBuilt, runCliAsync, startDaemon, type Daemon } from './support/processes.js';

const TD = 'migrate.example';
const CA_ARGS = (dataDir: string) => ['run', '--data-dir', dataDir, '--trust-domain', TD, '--listen', '127.0.0.1:0'];

function query<T>(file: string, sql: string, params: unknown[] = []): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (err) => {
      if (err) return reject(err);
      db.all<T>(sql, params, (e, rows) => db.close(() => (e ? reject(e) : resolve(rows))));
    });
  });
}

async function versions(file: string): Promise<number[]> {
  const t = await query(file, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
  if (t.length === 0) return [];
  return (await query<{ version: number }>(file, 'SELECT version FROM schema_migrations ORDER BY version')).map((r) => r.version);
}

async function columns(file: string, table: string): Promise<string[]> {
  return (await query<{ name: string }>(file, `SELECT name FROM pragma_table_info(?)`, [table])).map((r) => r.name);
}

async function tables(file: string): Promise<string[]> {
  return (await query<{ name: string }>(file, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")).map((r) => r.name);
}

/**
 * Everything in the database: the schema (every table, index and trigger
 * with its SQL) and every row of every table. Two equal snapshots mean
 * nothing was written in between.
 */
async function snapshot(file: string): Promise<string> {
  const schema = await query<{ type: string; name: string; sql: string | null }>(file, 'SELECT type, name, sql FROM sqlite_master ORDER BY type, name');
  const rows: Record<string, unknown[]> = {};
  for (const t of schema.filter((s) => s.type === 'table')) {
    rows[t.name] = await query(file, `SELECT * FROM "${t.name}" ORDER BY rowid`);
  }
  return JSON.stringify({ schema, rows }, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('hex') : v));
}

/** What each migration adds, to check that a killed one left none of it. */
async function hasMigration(file: string, version: number): Promise<boolean> {
  switch (version) {
    case 1:
      return (await tables(file)).includes('entries');
    case 2:
      return (await columns(file, 'entries')).includes('ssh');
    case 3:
      return (await columns(file, 'audit')).includes('hash');
    case 4:
      return (await tables(file)).includes('authority_journal') || (await columns(file, 'authorities')).includes('trusted_since_seq');
    case 5:
      return (await query<{ name: string }>(file, "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_chain_link'")).length === 1;
    default:
      // A new migration: name what it adds here.
      throw new Error(`no marker for migration ${version}`);
  }
}

interface OldData {
  entryIds: string[];
  agentId: string;
  serials: string[];
  auditActions: string[];
}

/**
 * Writes the database of `dataDir` as a CA at schema `k` would have left
 * it: migrations 1..k, WAL journal, and rows of that version's shape.
 */
async function olderDatabase(dataDir: string, k: number): Promise<OldData> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const t0 = Date.now() - 3_600_000;
  const sec = Math.floor(t0 / 1000);
  const agentId = `spiffe://${TD}/brevis/agent/join_token/${randomUUID()}`;
  const entryIds = [randomUUID(), randomUUID()];
  const serials = Array.from({ length: 4 }, () => randomBytes(16).toString('hex'));
  const audit: AuditRecord[] = [
    { timeMs: t0, caller: 'admin:uid=0', action: 'token.create', spiffeId: agentId, serial: null, notAfter: null, outcome: 'success', detail: null },
    { timeMs: t0 + 1000, caller: 'anonymous', action: 'attest.join_token', spiffeId: agentId, serial: serials[0]!, notAfter: sec + 3600, outcome: 'success', detail: null },
    { timeMs: t0 + 2000, caller: 'admin:uid=0', action: 'entry.create', spiffeId: `spiffe://${TD}/svc/a`, serial: null, notAfter: null, outcome: 'success', detail: entryIds[0]! },
    { timeMs: t0 + 3000, caller: 'admin:uid=0', action: 'entry.create', spiffeId: `spiffe://${TD}/svc/b`, serial: null, notAfter: null, outcome: 'success', detail: entryIds[1]! },
    ...serials.slice(1).map((serial, i): AuditRecord => ({
      timeMs: t0 + 4000 + i,
      caller: agentId,
      action: 'x509.mint',
      spiffeId: `spiffe://${TD}/svc/${i % 2 === 0 ? 'a' : 'b'}`,
      serial,
      notAfter: sec + 3600,
      outcome: 'success',
      detail: null,
    })),
  ];
  const db = await Db.open(path.join(dataDir, 'brevis.db'), { busyTimeoutMs: 1000 });
  try {
    await db.exclusive((s) => s.get('PRAGMA journal_mode = WAL'));
    await migrate(db, () => t0, MIGRATIONS.slice(0, k));
    await db.transaction(async (s) => {
      // Version 1's columns: every later version keeps them (and defaults what it adds).
      for (const [i, id] of entryIds.entries()) {
        await s.run(
          `INSERT INTO entries (id, spiffe_id, parent_id, selectors, x509_svid_ttl, dns_names, hint, admin, expires_at, revision, created_at)
           VALUES (?, ?, ?, ?, 0, ?, '', 0, NULL, 1, ?)`,
          [id, `spiffe://${TD}/svc/${i === 0 ? 'a' : 'b'}`, agentId, JSON.stringify([{ type: 'unix', value: `uid:${1000 + i}` }]), JSON.stringify(i === 0 ? ['a.example'] : []), sec],
        );
      }
      await s.run(`INSERT INTO join_tokens (id, secret_hash, agent_id, expires_at, used_at, created_at) VALUES (?, ?, ?, ?, ?, ?)`, [
        agentId.split('/').at(-1)!,
        randomBytes(32).toString('hex'),
        agentId,
        sec + 600,
        sec + 1,
        sec,
      ]);
      await s.run(
        `INSERT INTO agents (agent_id, attestation_type, serial, expires_at, selectors, banned, created_at, last_seen_at)
         VALUES (?, 'join_token', ?, ?, '[]', 0, ?, ?)`,
        [agentId, serials[0]!, sec + 86_400, sec + 1, sec + 4],
      );
      if (k >= 3) {
        // The chain exists from migration 3 on: that version wrote hashes.
        await appendChainedAudit(s, audit);
      } else {
        for (const r of audit) {
          await s.run('INSERT INTO audit (time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
            r.timeMs,
            r.caller,
            r.action,
            r.spiffeId,
            r.serial,
            r.notAfter,
            r.outcome,
            r.detail,
          ]);
        }
      }
    });
  } finally {
    await db.close();
  }
  return { entryIds, agentId, serials, auditActions: audit.map((r) => r.action) };
}

/** Runs the CA expecting it to kill itself at `step`; returns how it ended. */
function runUntilKilled(dataDir: string, step: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CA_BIN, ...CA_ARGS(dataDir)], { env: { ...process.env, BREVIS_CRASH_AT: step } });
    let stderr = '';
    p.stdout.resume();
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`the CA did not stop at ${step} within 30 s:\n${stderr}`));
    }, 30_000);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

describe('SIGKILL during a schema migration', () => {
  let root: string;
  const daemons: Daemon[] = [];
  beforeAll(() => {
    requireBuilt();
    root = mkdtempSync(path.join(os.tmpdir(), 'brevis-migrate-kill-'));
  });
  afterAll(async () => {
    for (const d of daemons) await d.stop();
    rmSync(root, { recursive: true, force: true });
  });

  /** Starts the CA without a crash point and checks everything a restart must give. */
  async function restartAndCheck(dataDir: string, old: OldData, label: string): Promise<void> {
    const file = path.join(dataDir, 'brevis.db');
    const ca = await startDaemon(CA_BIN, CA_ARGS(dataDir), /CA serving/);
    daemons.push(ca);
    const cli = async (...args: string[]) => {
      const r = await runCliAsync(CA_BIN, [...args, '--socket', path.join(dataDir, 'admin.sock')]);
      expect(r.status, `brevis-ca ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    try {
      // Every migration applied exactly once, in order, under its own name.
      const applied = await query<{ version: number; name: string }>(file, 'SELECT version, name FROM schema_migrations ORDER BY version');
      expect(applied).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
      for (const m of MIGRATIONS) expect(await hasMigration(file, m.version), `migration ${m.version}`).toBe(true);
      expect((await query<{ integrity_check: string }>(file, 'PRAGMA integrity_check'))[0]!.integrity_check).toBe('ok');

      // The old rows, read back through the running CA.
      const entries = JSON.parse(await cli('entry', 'list', '--json')) as Array<{ id: string; spiffeId: string; parentId: string }>;
      expect(entries.map((e) => e.id).sort()).toEqual([...old.entryIds].sort());
      expect(entries.every((e) => e.parentId === old.agentId)).toBe(true);
      const agents = JSON.parse(await cli('agent', 'list', '--json')) as Array<{ agentId: string; serial: string }>;
      expect(agents).toEqual([expect.objectContaining({ agentId: old.agentId, serial: old.serials[0] })]);

      // Mint, then: the chain verifies over old and new records, and no serial repeats.
      for (let i = 0; i < 3; i++) await cli('x509', 'mint', '--spiffe-id', `spiffe://${TD}/after/${i}`, '--out-dir', path.join(dataDir, '..', `${label}-out`));
      const verified = (await cli('audit', 'verify')).trim();
      expect(verified).toMatch(/^audit trail intact: \d+ records/);
      const audit = JSON.parse(await cli('audit', 'list', '--json')) as Array<{ seq: number; action: string; spiffeId: string | null; serial: string | null; hash: string }>;
      expect(audit.slice(0, old.auditActions.length).map((a) => a.action)).toEqual(old.auditActions);
      expect(audit.every((a) => /^[0-9a-f]{64}$/.test(a.hash))).toBe(true);
      const serials = audit.filter((a) => a.serial !== null).map((a) => a.serial!);
      expect(serials.slice(0, old.serials.length)).toEqual(old.serials);
      const fresh = audit.filter((a) => a.action === 'x509.mint' && a.serial !== null && a.spiffeId?.startsWith(`spiffe://${TD}/after/`));
      expect(fresh).toHaveLength(3);
      expect(new Set(serials).size, 'a serial was issued twice').toBe(serials.length);
      console.log(`${label}: after the restart schema ${applied.map((a) => a.version).join(',')}; ${verified}; ${serials.length} serials, all unique`);
    } finally {
      await ca.stop();
    }
  }

  for (const k of [1, 2, 3, 4]) {
    const step = `migrate:${k + 1}:in-transaction`;
    it(`leaves a database at schema ${k} untouched when killed at ${step}, and the next start resumes`, async () => {
      const label = `k${k}-in-transaction`;
      const dataDir = path.join(root, label);
      const file = path.join(dataDir, 'brevis.db');
      const old = await olderDatabase(dataDir, k);
      const before = await snapshot(file);
      expect(await versions(file)).toEqual(MIGRATIONS.slice(0, k).map((m) => m.version));
      expect(await hasMigration(file, k + 1)).toBe(false);

      const killed = await runUntilKilled(dataDir, step);
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      expect(killed.stderr).toContain(`BREVIS_CRASH_AT: killing the CA at ${step}`);

      // No half-written state: byte for byte the database it found.
      const afterCrash = await versions(file);
      expect(afterCrash).toEqual(MIGRATIONS.slice(0, k).map((m) => m.version));
      expect(await hasMigration(file, k + 1), `migration ${k + 1} left something behind`).toBe(false);
      expect(await snapshot(file)).toBe(before);
      console.log(`${label}: schema ${k} with data, killed at ${step}; after the kill schema_migrations = [${afterCrash.join(',')}], migration ${k + 1} absent, database unchanged`);

      await restartAndCheck(dataDir, old, label);
    });
  }

  it('keeps a migration killed right after its commit and resumes with the next one', async () => {
    const k = 2;
    const step = `migrate:${k + 1}:committed`;
    const label = `k${k}-committed`;
    const dataDir = path.join(root, label);
    const file = path.join(dataDir, 'brevis.db');
    const old = await olderDatabase(dataDir, k);
    expect(await versions(file)).toEqual([1, 2]);

    const killed = await runUntilKilled(dataDir, step);
    expect(killed.signal, killed.stderr).toBe('SIGKILL');
    expect(killed.stderr).toContain(`BREVIS_CRASH_AT: killing the CA at ${step}`);

    const afterCrash = await versions(file);
    expect(afterCrash).toEqual([1, 2, 3]);
    expect(await hasMigration(file, 3)).toBe(true);
    expect(await hasMigration(file, 4)).toBe(false);
    // Killed before the old records were chained: they still are not.
    expect(await query(file, 'SELECT seq FROM audit WHERE hash IS NOT NULL')).toEqual([]);
    console.log(`${label}: schema ${k} with data, killed at ${step}; after the kill schema_migrations = [${afterCrash.join(',')}], migration 4 absent`);

    await restartAndCheck(dataDir, old, label);
  });
});
