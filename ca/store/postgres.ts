/**
 * The Store on PostgreSQL (node-postgres), for several CA servers sharing
 * one database. Same records, same errors and same guarantees as the
 * SQLite store: rows map through the same functions (sqlite-rows.ts), a
 * token is consumed by exactly one caller on any server, a ban is sticky,
 * and the audit chain is one chain whoever appends.
 */
import { realClock, type Clock } from '../../spiffe/clock.js';
import type { ChainedAuditRecord } from '../audit/audit-hash.js';
import type { CrashHook } from '../crash-hook.js';
import type { ReadChainOptions } from '../audit/sqlite-audit-chain.js';
import { appendChainedAuditPg, backfillAuditChainPg, readAuditChainPg } from './postgres-audit-chain.js';
import { PgDb, redactUrl, toStoreErrorPg, type PgDbOptions, type PgParams } from './postgres-db.js';
import { migratePg } from './pg-migrations.js';
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
  type JoinTokenRecord,
  type NewEntry,
  type Store,
} from './store.js';

export interface PostgresStoreOptions extends PgDbOptions {
  /** Only used to timestamp applied migrations. */
  clock?: Clock;
  /** Crash points for tests in the schema migrations (see `migratePg`). */
  crashHook?: CrashHook;
}

/** True for the URLs `openPostgresStore` takes (`postgres://` or `postgresql://`). */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/**
 * Connects to `url` and applies pending migrations (several servers may do
 * this at once). Fails with StoreError 'IO' when the server cannot be
 * reached and 'CORRUPT' when the schema is newer than this code.
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  if (!isPostgresUrl(url)) throw new StoreError('IO', `not a PostgreSQL URL: ${redactUrl(url)}`);
  const db = await PgDb.open(url, options);
  try {
    const clock = options.clock ?? realClock;
    await migratePg(db, () => clock.now().getTime(), undefined, options.crashHook);
    await backfillAuditChainPg(db);
  } catch (err) {
    await db.close().catch(() => undefined);
    throw toStoreErrorPg(err, `cannot open store ${redactUrl(url)}`);
  }
  return new PostgresStore(db);
}

const AUTHORITY_COLUMNS = 'id, kind, state, public_der, parent_id, key_ref, not_before, not_after, created_at';

/** A Store on a PostgreSQL database. Create with `openPostgresStore`. */
export class PostgresStore implements Store {
  readonly #db: PgDb;

  /** @internal Use `openPostgresStore`. */
  constructor(db: PgDb) {
    this.#db = db;
  }

  /** @internal The pool, for the PostgreSQL parts of other modules (life cycle, keys, coordination). */
  get db(): PgDb {
    return this.#db;
  }

  close(): Promise<void> {
    return this.#db.close();
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
      ...(entry.ssh
        ? { ssh: { ...entry.ssh, principals: [...entry.ssh.principals], extensions: [...entry.ssh.extensions], hostPrincipals: [...entry.ssh.hostPrincipals] } }
        : {}),
    };
    try {
      await this.#db.run(
        `INSERT INTO entries (id, spiffe_id, parent_id, selectors, x509_svid_ttl, dns_names, hint, admin,
           expires_at, revision, created_at, ssh) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
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
      if (err instanceof StoreError && err.code === 'CONFLICT' && (await this.getEntry(record.id)) !== undefined) {
        throw new StoreError('CONFLICT', `entry ${record.id} already exists`, { cause: err });
      }
      throw err;
    }
    return record;
  }

  async getEntry(id: string): Promise<EntryRecord | undefined> {
    const [row] = await this.#db.query<EntryRow>(`${SELECT_ENTRY} WHERE id = $1`, [id]);
    return row && entryFromRow(row);
  }

  async listEntries(): Promise<EntryRecord[]> {
    return (await this.#db.query<EntryRow>(`${SELECT_ENTRY} ORDER BY id`)).map(entryFromRow);
  }

  async listEntriesByParents(parentIds: string[]): Promise<EntryRecord[]> {
    if (parentIds.length === 0) {
      if (this.#db.closed) throw new StoreError('CLOSED', 'store is closed');
      return [];
    }
    return (await this.#db.query<EntryRow>(`${SELECT_ENTRY} WHERE parent_id = ANY($1::text[]) ORDER BY id`, [parentIds])).map(entryFromRow);
  }

  async deleteEntry(id: string): Promise<boolean> {
    return (await this.#db.run('DELETE FROM entries WHERE id = $1', [id])) > 0;
  }

  // Join tokens

  async createJoinToken(token: JoinTokenRecord): Promise<void> {
    await this.#db.run(
      `INSERT INTO join_tokens (id, secret_hash, agent_id, expires_at, used_at, created_at, ssh_host_principals)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [token.id, token.secretHash, token.agentId, token.expiresAt, token.usedAt, token.createdAt, JSON.stringify(token.sshHostPrincipals ?? [])],
    );
  }

  consumeJoinToken(secretHash: string, now: number): Promise<ConsumeTokenResult> {
    // The guarded UPDATE is the decision: a concurrent consumer on any
    // server waits for the row lock, then finds used_at set and changes nothing.
    return this.#db.transaction(async (s) => {
      const changed = await s.run('UPDATE join_tokens SET used_at = $1 WHERE secret_hash = $2 AND used_at IS NULL AND expires_at > $1', [
        now,
        secretHash,
      ]);
      const row = await s.get<JoinTokenRow>(`${SELECT_TOKEN} WHERE secret_hash = $1`, [secretHash]);
      if (changed === 1 && row) return { ok: true, token: tokenFromRow(row) };
      if (!row) return { ok: false, reason: 'unknown' };
      if (row.used_at !== null) return { ok: false, reason: 'used' };
      return { ok: false, reason: 'expired' };
    });
  }

  // Agents

  async upsertAgent(agent: AgentRecord): Promise<void> {
    // A ban is sticky: re-attestation racing with a ban must not lift it.
    await this.#db.run(
      `INSERT INTO agents (agent_id, attestation_type, serial, expires_at, selectors, banned, created_at, last_seen_at,
         ssh_host_principals)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (agent_id) DO UPDATE SET
         attestation_type = excluded.attestation_type, serial = excluded.serial,
         expires_at = excluded.expires_at, selectors = excluded.selectors,
         banned = greatest(agents.banned, excluded.banned),
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
    );
  }

  async getAgent(agentId: string): Promise<AgentRecord | undefined> {
    const [row] = await this.#db.query<AgentRow>(`${SELECT_AGENT} WHERE agent_id = $1`, [agentId]);
    return row && agentFromRow(row);
  }

  async listAgents(): Promise<AgentRecord[]> {
    return (await this.#db.query<AgentRow>(`${SELECT_AGENT} ORDER BY agent_id`)).map(agentFromRow);
  }

  updateAgentSvid(agentId: string, serial: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#changed('UPDATE agents SET serial = $1, expires_at = $2, last_seen_at = $3 WHERE agent_id = $4', [serial, expiresAt, now, agentId]);
  }

  async touchAgent(agentId: string, now: number): Promise<void> {
    await this.#changed('UPDATE agents SET last_seen_at = $1 WHERE agent_id = $2', [now, agentId]);
  }

  deleteAgent(agentId: string): Promise<boolean> {
    return this.#changed('DELETE FROM agents WHERE agent_id = $1', [agentId]);
  }

  banAgent(agentId: string): Promise<boolean> {
    return this.#changed('UPDATE agents SET banned = 1 WHERE agent_id = $1', [agentId]);
  }

  // Audit

  async appendAudit(records: AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.#db.transaction((s) => appendChainedAuditPg(s, records));
  }

  async listAudit(options: { sinceMs?: number; limit?: number } = {}): Promise<AuditRecord[]> {
    const params: unknown[] = [];
    let where = '';
    if (options.sinceMs !== undefined) {
      params.push(options.sinceMs);
      where = 'WHERE time_ms >= $1';
    }
    params.push(options.limit ?? null);
    return (
      await this.#db.query<AuditRow>(
        `SELECT seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail
         FROM audit ${where} ORDER BY seq LIMIT $${params.length}`,
        params,
      )
    ).map(auditFromRow);
  }

  /** The audit records with their hashes (for verification), oldest first. */
  readAuditChain(options: ReadChainOptions = {}): Promise<ChainedAuditRecord[]> {
    return readAuditChainPg(this.#db, options);
  }

  // Authorities

  async putAuthority(a: AuthorityRecord): Promise<void> {
    await this.#db.run(
      `INSERT INTO authorities (${AUTHORITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (id) DO UPDATE SET
         kind = excluded.kind, state = excluded.state, public_der = excluded.public_der,
         parent_id = excluded.parent_id, key_ref = excluded.key_ref, not_before = excluded.not_before,
         not_after = excluded.not_after, created_at = excluded.created_at`,
      [a.id, a.kind, a.state, a.publicDer, a.parentId, a.keyRef, a.notBefore, a.notAfter, a.createdAt],
    );
  }

  async listAuthorities(kind?: AuthorityKind): Promise<AuthorityRecord[]> {
    const where = kind === undefined ? '' : 'WHERE kind = $1';
    return (
      await this.#db.query<AuthorityRow>(`SELECT ${AUTHORITY_COLUMNS} FROM authorities ${where} ORDER BY not_before, id`, kind === undefined ? [] : [kind])
    ).map(authorityFromRow);
  }

  setAuthorityState(id: string, state: AuthorityState): Promise<boolean> {
    return this.#changed('UPDATE authorities SET state = $1 WHERE id = $2', [state, id]);
  }

  // Meta

  async getMeta(key: string): Promise<string | undefined> {
    return (await this.#db.query<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key]))[0]?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.#db.run('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]);
  }

  async #changed(sql: string, params: PgParams): Promise<boolean> {
    return (await this.#db.run(sql, params)) > 0;
  }
}
