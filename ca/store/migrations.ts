/**
 * Versioned schema migrations for the SQLite store. Each migration runs in
 * its own transaction and is recorded in `schema_migrations`, so a crash
 * between two migrations leaves a database at a known version.
 *
 * Never edit a migration that has shipped: append a new one.
 */
import { NO_CRASH, type CrashHook } from '../crash-hook.js';
import type { Db, Session } from './db.js';
import { StoreError } from './store.js';

export interface Migration {
  /** 1, 2, 3, ... without gaps. */
  readonly version: number;
  readonly name: string;
  /** One or more statements; run inside the migration's transaction. */
  readonly sql: string;
}

/**
 * Tables are STRICT so a wrong type (a float where seconds belong, a Buffer
 * where text belongs) fails loudly instead of being stored. Selectors and DNS
 * names are JSON arrays: nothing queries inside them, and a row then reads
 * back in one lookup.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE entries (
  id            TEXT    NOT NULL PRIMARY KEY,
  spiffe_id     TEXT    NOT NULL,
  parent_id     TEXT    NOT NULL,
  selectors     TEXT    NOT NULL CHECK (json_valid(selectors) AND json_type(selectors) = 'array'),
  x509_svid_ttl INTEGER NOT NULL CHECK (x509_svid_ttl >= 0),
  dns_names     TEXT    NOT NULL CHECK (json_valid(dns_names) AND json_type(dns_names) = 'array'),
  hint          TEXT    NOT NULL,
  admin         INTEGER NOT NULL CHECK (admin IN (0, 1)),
  expires_at    INTEGER,
  revision      INTEGER NOT NULL CHECK (revision >= 1),
  created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX entries_parent_id ON entries (parent_id);
CREATE INDEX entries_spiffe_id ON entries (spiffe_id);

CREATE TABLE join_tokens (
  id          TEXT    NOT NULL PRIMARY KEY,
  secret_hash TEXT    NOT NULL UNIQUE,
  agent_id    TEXT    NOT NULL,
  expires_at  INTEGER NOT NULL,
  used_at     INTEGER,
  created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE agents (
  agent_id         TEXT    NOT NULL PRIMARY KEY,
  attestation_type TEXT    NOT NULL CHECK (attestation_type IN ('join_token', 'x509pop')),
  serial           TEXT    NOT NULL,
  expires_at       INTEGER NOT NULL,
  selectors        TEXT    NOT NULL CHECK (json_valid(selectors) AND json_type(selectors) = 'array'),
  banned           INTEGER NOT NULL CHECK (banned IN (0, 1)),
  created_at       INTEGER NOT NULL,
  last_seen_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE audit (
  seq       INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ms   INTEGER NOT NULL,
  caller    TEXT    NOT NULL,
  action    TEXT    NOT NULL,
  spiffe_id TEXT,
  serial    TEXT,
  not_after INTEGER,
  outcome   TEXT    NOT NULL CHECK (outcome IN ('success', 'failure')),
  detail    TEXT
) STRICT;
CREATE INDEX audit_time_ms ON audit (time_ms);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
  SELECT RAISE(ABORT, 'audit records are append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
  SELECT RAISE(ABORT, 'audit records are append-only');
END;

CREATE TABLE authorities (
  id         TEXT    NOT NULL PRIMARY KEY,
  kind       TEXT    NOT NULL CHECK (kind IN ('x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host')),
  state      TEXT    NOT NULL CHECK (state IN ('prepared', 'active', 'retired', 'tainted', 'revoked')),
  public_der BLOB    NOT NULL,
  parent_id  TEXT,
  key_ref    TEXT    NOT NULL,
  not_before INTEGER NOT NULL,
  not_after  INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX authorities_kind ON authorities (kind);

CREATE TABLE meta (
  key   TEXT NOT NULL PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
`,
  },
  {
    version: 2,
    name: 'ssh certificates',
    // Entries keep their SSH settings as one JSON object (null: none); host
    // names bound by a join token travel to the agent that redeems it.
    sql: `
ALTER TABLE entries ADD COLUMN ssh TEXT CHECK (ssh IS NULL OR (json_valid(ssh) AND json_type(ssh) = 'object'));
ALTER TABLE join_tokens ADD COLUMN ssh_host_principals TEXT NOT NULL DEFAULT '[]'
  CHECK (json_valid(ssh_host_principals) AND json_type(ssh_host_principals) = 'array');
ALTER TABLE agents ADD COLUMN ssh_host_principals TEXT NOT NULL DEFAULT '[]'
  CHECK (json_valid(ssh_host_principals) AND json_type(ssh_host_principals) = 'array');
`,
  },
  {
    version: 3,
    name: 'audit hash chain',
    // Each record carries the previous record's hash and its own (see
    // ca/audit/audit-hash.ts). Records written before this migration are
    // chained once at open: the update trigger allows setting a NULL hash
    // and nothing else.
    sql: `
ALTER TABLE audit ADD COLUMN prev_hash TEXT CHECK (prev_hash IS NULL OR length(prev_hash) = 64);
ALTER TABLE audit ADD COLUMN hash TEXT CHECK (hash IS NULL OR length(hash) = 64);
DROP TRIGGER audit_no_update;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
WHEN OLD.hash IS NOT NULL OR NEW.hash IS NULL OR NEW.prev_hash IS NULL
  OR NEW.seq IS NOT OLD.seq OR NEW.time_ms IS NOT OLD.time_ms OR NEW.caller IS NOT OLD.caller
  OR NEW.action IS NOT OLD.action OR NEW.spiffe_id IS NOT OLD.spiffe_id OR NEW.serial IS NOT OLD.serial
  OR NEW.not_after IS NOT OLD.not_after OR NEW.outcome IS NOT OLD.outcome OR NEW.detail IS NOT OLD.detail
BEGIN
  SELECT RAISE(ABORT, 'audit records are append-only');
END;
`,
  },
  {
    version: 4,
    name: 'authority life cycle',
    // Trust bookkeeping on each authority (ca/rotation/): the bundle
    // sequence from which relying parties trust it, when it retired, until
    // when it stays trusted, and when it left trust. One journal of
    // transitions; certificates of intermediates cross-signed by another
    // root; what each agent last reported (bundle applied, credentials held
    // per authority). At most one active authority per kind: a database
    // left with two by an older version keeps the newest.
    sql: `
ALTER TABLE authorities ADD COLUMN trusted_since_seq INTEGER;
ALTER TABLE authorities ADD COLUMN retired_at INTEGER;
ALTER TABLE authorities ADD COLUMN trust_until INTEGER;
ALTER TABLE authorities ADD COLUMN untrusted_at INTEGER;
UPDATE authorities SET trusted_since_seq = 1 WHERE state <> 'revoked';
UPDATE authorities SET state = 'retired', retired_at = created_at, trust_until = not_after
WHERE state = 'active' AND EXISTS (
  SELECT 1 FROM authorities b WHERE b.kind = authorities.kind AND b.state = 'active'
    AND (b.not_before > authorities.not_before OR (b.not_before = authorities.not_before AND b.id > authorities.id)));
CREATE UNIQUE INDEX authorities_one_active ON authorities (kind) WHERE state = 'active';

CREATE TABLE authority_cross_certs (
  subject_id TEXT    NOT NULL,
  issuer_id  TEXT    NOT NULL,
  der        BLOB    NOT NULL,
  not_after  INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (subject_id, issuer_id)
) STRICT;

CREATE TABLE authority_journal (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  started_ms   INTEGER NOT NULL,
  finished_ms  INTEGER,
  kind         TEXT    NOT NULL CHECK (kind IN ('x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host')),
  action       TEXT    NOT NULL,
  authority_id TEXT,
  caller       TEXT    NOT NULL,
  status       TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'rolled_back')),
  plan         TEXT    NOT NULL CHECK (json_valid(plan) AND json_type(plan) = 'object'),
  detail       TEXT
) STRICT;
CREATE INDEX authority_journal_pending ON authority_journal (status) WHERE status = 'pending';

CREATE TABLE agent_status (
  agent_id        TEXT    NOT NULL PRIMARY KEY,
  bundle_sequence INTEGER NOT NULL,
  holdings        TEXT    NOT NULL CHECK (json_valid(holdings) AND json_type(holdings) = 'object'),
  reported_at     INTEGER NOT NULL
) STRICT;
`,
  },
  {
    version: 5,
    name: 'audit chain link check',
    // A record must chain to the record before it: its prev_hash is the
    // last record's hash (the genesis hash for the first). Whoever writes,
    // a record that would break the chain is refused, and writers that
    // remember the head they wrote last may append without reading it
    // again (ca/audit/sqlite-audit-chain.ts, appendChainedAuditAfter).
    // Rows of a multi-row INSERT are checked one by one, each after the one
    // before it.
    sql: `
CREATE TRIGGER audit_chain_link BEFORE INSERT ON audit
WHEN NEW.prev_hash IS NOT coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '${'0'.repeat(64)}')
BEGIN
  SELECT RAISE(ABORT, 'audit chain: a record must chain to the last record');
END;
`,
  },
];

/** The schema version this code writes and understands. */
export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]!.version;

const CREATE_MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS schema_migrations (
  version       INTEGER NOT NULL PRIMARY KEY,
  name          TEXT    NOT NULL,
  applied_at_ms INTEGER NOT NULL
) STRICT`;

/** The highest applied migration, or 0 for a new database. Reads only. */
export async function readSchemaVersion(s: Session): Promise<number> {
  const table = await s.get<{ name: string }>(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
  );
  if (!table) return 0;
  const row = await s.get<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations');
  return row?.version ?? 0;
}

/**
 * Brings the database up to SCHEMA_VERSION. Refuses (StoreError 'CORRUPT') a
 * database written by a newer version of the code: this code would misread
 * it. A database already at the current version is not written to, so a
 * read-only file still opens.
 *
 * @param nowMs the time recorded for each applied migration, milliseconds.
 * @param crashHook crash points for tests (ca/crash-hook.ts):
 *   `migrate:<version>:in-transaction` once the migration's SQL and its
 *   `schema_migrations` row are written but not committed, and
 *   `migrate:<version>:committed` right after the commit.
 */
export async function migrate(
  db: Db,
  nowMs: () => number,
  migrations: readonly Migration[] = MIGRATIONS,
  crashHook: CrashHook = NO_CRASH,
): Promise<void> {
  const known = migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
  const current = await db.exclusive(readSchemaVersion);
  if (current > known) {
    throw new StoreError(
      'CORRUPT',
      `database schema version ${current} is newer than this build supports (${known}); ` +
        'run a newer Brevis or restore a backup made by this version',
    );
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    const applied = await db.transaction(async (s) => {
      // Another process may have migrated since the read above: re-check
      // under the write lock that BEGIN IMMEDIATE holds.
      await s.exec(CREATE_MIGRATIONS_TABLE);
      if ((await readSchemaVersion(s)) >= m.version) return false;
      await s.exec(m.sql);
      await s.run('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)', [
        m.version,
        m.name,
        nowMs(),
      ]);
      crashHook(`migrate:${m.version}:in-transaction`);
      return true;
    });
    if (applied) crashHook(`migrate:${m.version}:committed`);
  }
}
