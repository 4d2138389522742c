/**
 * The Store on a local SQLite file (node-sqlite3): WAL journal, full fsync
 * by default, one connection whose users are serialized by `Db`.
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { realClock, type Clock } from '../../spiffe/clock.js';
import type { CrashHook } from '../crash-hook.js';
import { Db, toStoreError, type Session } from './db.js';
import { migrate } from './migrations.js';
import { MAX_ROWS_AFTER_HEAD, appendChainedAudit, appendChainedAuditAfter, backfillAuditChain } from '../audit/sqlite-audit-chain.js';
import { AuditGroupCommit } from './audit-group-commit.js';
import { ReadCache, deepFreeze } from './read-cache.js';
import {
  SELECT_AGENT,
  SELECT_ENTRY,
  SELECT_TOKEN,
  agentFromRow,
  auditFromRow,
  authorityFromRow,
  entryFromRow,
  entrySshToJson,
  normalizeSelectors,
  tokenFromRow,
  type AgentRow,
  type AuditRow,
  type AuthorityRow,
  type EntryRow,
  type JoinTokenRow,
} from './sqlite-rows.js';
import {
  StoreError,
  type AgentRecord,
  type AuditRecord,
  type AuthorityKind,
  type AuthorityRecord,
  type AuthorityState,
  type ConsumeTokenResult,
  type EntryRecord,
  type EntrySsh,
  type JoinTokenRecord,
  type NewEntry,
  type Store,
} from './store.js';

export interface SqliteStoreOptions {
  /**
   * FULL (default) fsyncs the WAL on every commit: a committed audit record
   * or consumed token survives power loss. NORMAL is about 2.5x faster but
   * may lose the last commits on power loss (never corrupts).
   */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long to wait for another process's lock, milliseconds. Default 5000. */
  busyTimeoutMs?: number;
  /** Only used to timestamp applied migrations. */
  clock?: Clock;
  /**
   * How long agent records and entries read for the node API are served from
   * memory, milliseconds (ca/store/read-cache.ts); 0 turns that off. Writes
   * through this store are seen at once either way. Default 1000.
   */
  readCacheMs?: number;
  /** Crash points for tests in the schema migrations (see `migrate`). */
  crashHook?: CrashHook;
}

/**
 * Opens the store at `path`, creating the file with mode 0600 (the parent
 * directory must exist) and applying pending migrations. An existing file
 * readable by group or others has those bits removed. Fails with StoreError
 * 'IO' when the file cannot be opened and 'CORRUPT' when it is not a database
 * or its schema is newer than this code.
 */
export async function openSqliteStore(path: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
  await restrictFileModes(path);
  const db = await Db.open(path, { busyTimeoutMs: options.busyTimeoutMs ?? 5000 });
  try {
    await db.exclusive(async (s) => {
      const mode = await s.get<{ journal_mode: string }>('PRAGMA journal_mode = WAL');
      if (mode?.journal_mode.toLowerCase() !== 'wal') {
        throw new StoreError('IO', `cannot enable WAL journal on ${path} (got ${mode?.journal_mode ?? 'nothing'})`);
      }
      await s.exec(`PRAGMA synchronous = ${options.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`);
      await s.exec('PRAGMA foreign_keys = ON');
    });
    const clock = options.clock ?? realClock;
    await migrate(db, () => clock.now().getTime(), undefined, options.crashHook);
    await backfillAuditChain(db);
  } catch (err) {
    await db.close().catch(() => undefined);
    throw toStoreError(err, `cannot open store ${path}`);
  }
  return new SqliteStore(db, options.readCacheMs ?? 1000);
}

/** Creates `path` as 0600 if missing; strips group/other bits from it and its WAL files. */
async function restrictFileModes(path: string): Promise<void> {
  try {
    const handle = await fsp.open(path, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600);
    await handle.close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new StoreError('IO', `cannot create database file ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      const { mode } = await fsp.stat(file);
      if ((mode & 0o077) !== 0) await fsp.chmod(file, mode & 0o700);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && file !== path) continue;
      throw new StoreError('IO', `cannot restrict permissions of ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** A Store on one SQLite file. Create with `openSqliteStore`. */
export class SqliteStore implements Store {
  readonly #db: Db;
  /** Agent records by agent id (undefined: no such agent). */
  readonly #agents: ReadCache<AgentRecord | undefined>;
  /** Entries by parent id, each list sorted by id and frozen. */
  readonly #children: ReadCache<readonly EntryRecord[]>;
  readonly #audit: AuditGroupCommit;
  /** Entry writes started by this process (see entriesRevision). */
  #entryWrites = 0;
  readonly #readCacheMs: number;

  /** @internal Use `openSqliteStore`. */
  constructor(db: Db, readCacheMs = 0) {
    this.#db = db;
    this.#readCacheMs = readCacheMs;
    this.#agents = new ReadCache({ ttlMs: readCacheMs, maxEntries: 10_000 });
    this.#children = new ReadCache({ ttlMs: readCacheMs, maxEntries: 200_000 });
    this.#audit = new AuditGroupCommit(db, { append: appendChainedAudit, appendAfter: appendChainedAuditAfter, maxRowsAfter: MAX_ROWS_AFTER_HEAD });
  }

  close(): Promise<void> {
    return this.#db.close();
  }

  /**
   * @internal The connection, for the SQLite parts of other modules that must
   * write in the same transactions (audit chain, authority journal).
   */
  get db(): Db {
    return this.#db;
  }

  // Registration entries

  async createEntry(entry: NewEntry, createdAt: number): Promise<EntryRecord> {
    const record: EntryRecord = {
      id: entry.id,
      spiffeId: entry.spiffeId,
      parentId: entry.parentId,
      selectors: normalizeSelectors(entry.selectors),
      x509SvidTtl: entry.x509SvidTtl,
      dnsNames: [...entry.dnsNames],
      hint: entry.hint,
      admin: entry.admin,
      expiresAt: entry.expiresAt,
      revision: 1,
      createdAt,
      ...(entry.ssh ? { ssh: copySsh(entry.ssh) } : {}),
    };
    this.#entryWrites++;
    this.#children.forget();
    await this.#db.exclusive(async (s) => {
      try {
        await s.run(
          `INSERT INTO entries (id, spiffe_id, parent_id, selectors, x509_svid_ttl, dns_names, hint, admin,
             expires_at, revision, created_at, ssh) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [
            record.id,
            record.spiffeId,
            record.parentId,
            JSON.stringify(record.selectors),
            record.x509SvidTtl,
            JSON.stringify(record.dnsNames),
            record.hint,
            record.admin ? 1 : 0,
            record.expiresAt,
            record.revision,
            record.createdAt,
            record.ssh ? entrySshToJson(record.ssh) : null,
          ],
        );
      } catch (err) {
        if (err instanceof StoreError && err.code === 'CONFLICT' && (await this.#entryExists(s, record.id))) {
          throw new StoreError('CONFLICT', `entry ${record.id} already exists`, { cause: err });
        }
        throw err;
      }
    });
    return record;
  }

  async #entryExists(s: Session, id: string): Promise<boolean> {
    return (await s.get('SELECT 1 FROM entries WHERE id = ?', [id])) !== undefined;
  }

  getEntry(id: string): Promise<EntryRecord | undefined> {
    return this.#db.exclusive(async (s) => {
      const row = await s.get<EntryRow>(`${SELECT_ENTRY} WHERE id = ?`, [id]);
      return row && entryFromRow(row);
    });
  }

  listEntries(): Promise<EntryRecord[]> {
    return this.#db.exclusive(async (s) => (await s.all<EntryRow>(`${SELECT_ENTRY} ORDER BY id`)).map(entryFromRow));
  }

  async listEntriesByParents(parentIds: string[]): Promise<EntryRecord[]> {
    if (parentIds.length === 0) {
      if (this.#db.closed) throw new StoreError('CLOSED', 'store is closed');
      return [];
    }
    if (this.#db.closed) throw new StoreError('CLOSED', 'store is closed');
    const parents = [...new Set(parentIds)];
    const byParent = await this.#children.getMany(parents, async (missing) => {
      // One JSON parameter instead of N placeholders: no variable limit, and
      // sqlite still probes the entries_parent_id index once per value.
      const rows = await this.#db.exclusive((s) =>
        s.all<EntryRow>(`${SELECT_ENTRY} WHERE parent_id IN (SELECT value FROM json_each(?)) ORDER BY id`, [JSON.stringify(missing)]),
      );
      const found = new Map<string, EntryRecord[]>(missing.map((p) => [p, []]));
      for (const row of rows) found.get(row.parent_id)?.push(deepFreeze(entryFromRow(row)));
      return found;
    });
    const out = parents.flatMap((p) => byParent.get(p) ?? []);
    return parents.length > 1 ? out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)) : out;
  }

  /** Changes before every entry write is issued; answers may be kept as long as the read cache keeps rows. */
  entriesRevision(): { revision: number; maxAgeMs: number } {
    return { revision: this.#entryWrites, maxAgeMs: this.#readCacheMs };
  }

  deleteEntry(id: string): Promise<boolean> {
    this.#entryWrites++;
    this.#children.forget();
    return this.#db.exclusive(async (s) => (await s.run('DELETE FROM entries WHERE id = ?', [id])).changes > 0);
  }

  // Join tokens

  async createJoinToken(token: JoinTokenRecord): Promise<void> {
    await this.#db.exclusive((s) =>
      s.run(
        `INSERT INTO join_tokens (id, secret_hash, agent_id, expires_at, used_at, created_at, ssh_host_principals)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
        [token.id, token.secretHash, token.agentId, token.expiresAt, token.usedAt, token.createdAt, JSON.stringify(token.sshHostPrincipals ?? [])],
      ),
    );
  }

  consumeJoinToken(secretHash: string, now: number): Promise<ConsumeTokenResult> {
    // The guarded UPDATE is the decision; the read afterwards only explains it.
    return this.#db.transaction(async (s) => {
      const { changes } = await s.run(
        'UPDATE join_tokens SET used_at = ? WHERE secret_hash = ? AND used_at IS NULL AND expires_at > ?',
        [now, secretHash, now],
      );
      const row = await s.get<JoinTokenRow>(`${SELECT_TOKEN} WHERE secret_hash = ?`, [secretHash]);
      if (changes === 1 && row) return { ok: true, token: tokenFromRow(row) };
      if (!row) return { ok: false, reason: 'unknown' };
      if (row.used_at !== null) return { ok: false, reason: 'used' };
      return { ok: false, reason: 'expired' };
    });
  }

  // Agents

  async upsertAgent(agent: AgentRecord): Promise<void> {
    this.#agents.forget([agent.agentId]);
    // A ban is sticky: re-attestation racing with a ban must not lift it.
    await this.#db.exclusive((s) =>
      s.run(
        `INSERT INTO agents (agent_id, attestation_type, serial, expires_at, selectors, banned, created_at, last_seen_at,
           ssh_host_principals)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (agent_id) DO UPDATE SET
           attestation_type = excluded.attestation_type, serial = excluded.serial,
           expires_at = excluded.expires_at, selectors = excluded.selectors,
           banned = max(agents.banned, excluded.banned),
           created_at = excluded.created_at, last_seen_at = excluded.last_seen_at,
           ssh_host_principals = excluded.ssh_host_principals`,
        [
          agent.agentId,
          agent.attestationType,
          agent.serial,
          agent.expiresAt,
          JSON.stringify(normalizeSelectors(agent.selectors)),
          agent.banned ? 1 : 0,
          agent.createdAt,
          agent.lastSeenAt,
          JSON.stringify(agent.sshHostPrincipals ?? []),
        ],
      ),
    );
  }

  async getAgent(agentId: string): Promise<AgentRecord | undefined> {
    if (this.#db.closed) throw new StoreError('CLOSED', 'store is closed');
    const agent = await this.#agents.get(agentId, () =>
      this.#db.exclusive(async (s) => {
        const row = await s.get<AgentRow>(`${SELECT_AGENT} WHERE agent_id = ?`, [agentId]);
        return row && deepFreeze(agentFromRow(row));
      }),
    );
    return agent && copyAgent(agent);
  }

  listAgents(): Promise<AgentRecord[]> {
    return this.#db.exclusive(async (s) => (await s.all<AgentRow>(`${SELECT_AGENT} ORDER BY agent_id`)).map(agentFromRow));
  }

  updateAgentSvid(agentId: string, serial: string, expiresAt: number, now: number): Promise<boolean> {
    this.#agents.forget([agentId]);
    return this.#changed('UPDATE agents SET serial = ?, expires_at = ?, last_seen_at = ? WHERE agent_id = ?', [
      serial,
      expiresAt,
      now,
      agentId,
    ]);
  }

  async touchAgent(agentId: string, now: number): Promise<void> {
    this.#agents.forget([agentId]);
    await this.#changed('UPDATE agents SET last_seen_at = ? WHERE agent_id = ?', [now, agentId]);
  }

  deleteAgent(agentId: string): Promise<boolean> {
    this.#agents.forget([agentId]);
    return this.#changed('DELETE FROM agents WHERE agent_id = ?', [agentId]);
  }

  banAgent(agentId: string): Promise<boolean> {
    this.#agents.forget([agentId]);
    return this.#changed('UPDATE agents SET banned = 1 WHERE agent_id = ?', [agentId]);
  }

  // Audit

  async appendAudit(records: AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    // Hash-chained under the write lock; seq is assigned by the chain, never by callers.
    // Concurrent appends share one transaction (one fsync): see audit-group-commit.ts.
    await this.#audit.append(records);
  }

  listAudit(options: { sinceMs?: number; limit?: number } = {}): Promise<AuditRecord[]> {
    const where = options.sinceMs === undefined ? '' : 'WHERE time_ms >= ?';
    const params: unknown[] = options.sinceMs === undefined ? [] : [options.sinceMs];
    params.push(options.limit ?? -1); // LIMIT -1: no limit
    return this.#db.exclusive(async (s) =>
      (
        await s.all<AuditRow>(
          `SELECT seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail
           FROM audit ${where} ORDER BY seq LIMIT ?`,
          params,
        )
      ).map(auditFromRow),
    );
  }

  // Authorities

  async putAuthority(a: AuthorityRecord): Promise<void> {
    await this.#db.exclusive((s) =>
      s.run(
        `INSERT INTO authorities (id, kind, state, public_der, parent_id, key_ref, not_before, not_after, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET
           kind = excluded.kind, state = excluded.state, public_der = excluded.public_der,
           parent_id = excluded.parent_id, key_ref = excluded.key_ref, not_before = excluded.not_before,
           not_after = excluded.not_after, created_at = excluded.created_at`,
        [a.id, a.kind, a.state, a.publicDer, a.parentId, a.keyRef, a.notBefore, a.notAfter, a.createdAt],
      ),
    );
  }

  listAuthorities(kind?: AuthorityKind): Promise<AuthorityRecord[]> {
    const where = kind === undefined ? '' : 'WHERE kind = ?';
    return this.#db.exclusive(async (s) =>
      (
        await s.all<AuthorityRow>(
          `SELECT id, kind, state, public_der, parent_id, key_ref, not_before, not_after, created_at
           FROM authorities ${where} ORDER BY not_before, id`,
          kind === undefined ? [] : [kind],
        )
      ).map(authorityFromRow),
    );
  }

  setAuthorityState(id: string, state: AuthorityState): Promise<boolean> {
    return this.#changed('UPDATE authorities SET state = ? WHERE id = ?', [state, id]);
  }

  // Meta

  getMeta(key: string): Promise<string | undefined> {
    return this.#db.exclusive(async (s) => (await s.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', [key]))?.value);
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.#db.exclusive((s) =>
      s.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]),
    );
  }

  /** Runs one statement; true when it changed a row. */
  #changed(sql: string, params: unknown[]): Promise<boolean> {
    return this.#db.exclusive(async (s) => (await s.run(sql, params)).changes > 0);
  }
}

function copyAgent(a: AgentRecord): AgentRecord {
  return {
    ...a,
    selectors: a.selectors.map((x) => ({ ...x })),
    ...(a.sshHostPrincipals ? { sshHostPrincipals: [...a.sshHostPrincipals] } : {}),
  };
}

function copySsh(ssh: EntrySsh): EntrySsh {
  return { ...ssh, principals: [...ssh.principals], extensions: [...ssh.extensions], hostPrincipals: [...ssh.hostPrincipals] };
}
