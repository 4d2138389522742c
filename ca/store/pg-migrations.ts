/**
 * Versioned schema migrations for the PostgreSQL store: the same versions,
 * names and meaning as the SQLite store's (migrations.ts), written for
 * PostgreSQL, plus what only a shared database needs (CA keys in a table,
 * the audit chain head). Each migration runs in its own transaction under
 * an advisory lock, so several servers starting at once apply it exactly
 * once, and is recorded in `schema_migrations`.
 *
 * Never edit a migration that has shipped: append a new one. When
 * migrations.ts gains version N, add version N here too (a test compares
 * the two lists).
 *
 * Text columns that are sorted on are COLLATE "C" (code-unit order, the
 * same as SQLite's): the database's own collation must not change the
 * order of listings. JSON stays TEXT, checked with a cast, so that it reads
 * back byte for byte as written.
 */
import { NO_CRASH, type CrashHook } from '../crash-hook.js';
import type { Migration } from './migrations.js';
import type { PgDb, PgSession } from './postgres-db.js';
import { LOCKS, LOCK_CLASS } from './postgres-locks.js';
import { StoreError } from './store.js';

const jsonArray = (col: string) => `CHECK (jsonb_typeof(${col}::jsonb) = 'array')`;
const jsonObject = (col: string) => `CHECK (jsonb_typeof(${col}::jsonb) = 'object')`;
const KINDS = `('x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host')`;

export const PG_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE entries (
  id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  spiffe_id     TEXT COLLATE "C" NOT NULL,
  parent_id     TEXT COLLATE "C" NOT NULL,
  selectors     TEXT     NOT NULL ${jsonArray('selectors')},
  x509_svid_ttl BIGINT   NOT NULL CHECK (x509_svid_ttl >= 0),
  dns_names     TEXT     NOT NULL ${jsonArray('dns_names')},
  hint          TEXT     NOT NULL,
  admin         SMALLINT NOT NULL CHECK (admin IN (0, 1)),
  expires_at    BIGINT,
  revision      BIGINT   NOT NULL CHECK (revision >= 1),
  created_at    BIGINT   NOT NULL
);
CREATE INDEX entries_parent_id ON entries (parent_id);
CREATE INDEX entries_spiffe_id ON entries (spiffe_id);

CREATE TABLE join_tokens (
  id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  secret_hash TEXT   NOT NULL UNIQUE,
  agent_id    TEXT   NOT NULL,
  expires_at  BIGINT NOT NULL,
  used_at     BIGINT,
  created_at  BIGINT NOT NULL
);

CREATE TABLE agents (
  agent_id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  attestation_type TEXT     NOT NULL CHECK (attestation_type IN ('join_token', 'x509pop')),
  serial           TEXT     NOT NULL,
  expires_at       BIGINT   NOT NULL,
  selectors        TEXT     NOT NULL ${jsonArray('selectors')},
  banned           SMALLINT NOT NULL CHECK (banned IN (0, 1)),
  created_at       BIGINT   NOT NULL,
  last_seen_at     BIGINT   NOT NULL
);

-- seq is assigned by the audit chain (see postgres-audit-chain.ts), never by a sequence.
CREATE TABLE audit (
  seq       BIGINT NOT NULL PRIMARY KEY CHECK (seq >= 1),
  time_ms   BIGINT NOT NULL,
  caller    TEXT   NOT NULL,
  action    TEXT   NOT NULL,
  spiffe_id TEXT,
  serial    TEXT,
  not_after BIGINT,
  outcome   TEXT   NOT NULL CHECK (outcome IN ('success', 'failure')),
  detail    TEXT
);
CREATE INDEX audit_time_ms ON audit (time_ms);
CREATE FUNCTION brevis_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit records are append-only';
END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION brevis_audit_append_only();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION brevis_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION brevis_audit_append_only();

CREATE TABLE authorities (
  id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  kind       TEXT   NOT NULL CHECK (kind IN ${KINDS}),
  state      TEXT   NOT NULL CHECK (state IN ('prepared', 'active', 'retired', 'tainted', 'revoked')),
  public_der BYTEA  NOT NULL,
  parent_id  TEXT,
  key_ref    TEXT   NOT NULL,
  not_before BIGINT NOT NULL,
  not_after  BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  -- Insertion order (SQLite's rowid), the tie-breaker of listings.
  pos        BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX authorities_kind ON authorities (kind);

CREATE TABLE meta (
  key   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  value TEXT NOT NULL
);

-- CA private keys, encrypted with the key-encryption key every server is
-- configured with (the KEK itself is never stored here): the same
-- envelope as a key file (ca/keys/keystore.ts), bound to its ref.
CREATE TABLE ca_keys (
  ref        TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (ref ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
  sealed     BYTEA  NOT NULL,
  created_at BIGINT NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'ssh certificates',
    sql: `
ALTER TABLE entries ADD COLUMN ssh TEXT CHECK (ssh IS NULL OR jsonb_typeof(ssh::jsonb) = 'object');
ALTER TABLE join_tokens ADD COLUMN ssh_host_principals TEXT NOT NULL DEFAULT '[]' ${jsonArray('ssh_host_principals')};
ALTER TABLE agents ADD COLUMN ssh_host_principals TEXT NOT NULL DEFAULT '[]' ${jsonArray('ssh_host_principals')};
`,
  },
  {
    version: 3,
    name: 'audit hash chain',
    // audit_head is the chain's lock and high-water mark: appends take its
    // one row FOR UPDATE, so appends from every server serialize and a seq
    // is never handed out twice, even if the newest rows were deleted.
    sql: `
ALTER TABLE audit ADD COLUMN prev_hash TEXT CHECK (prev_hash IS NULL OR length(prev_hash) = 64);
ALTER TABLE audit ADD COLUMN hash TEXT CHECK (hash IS NULL OR length(hash) = 64);
DROP TRIGGER audit_no_update ON audit;
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW
WHEN (OLD.hash IS NOT NULL OR NEW.hash IS NULL OR NEW.prev_hash IS NULL
  OR NEW.seq IS DISTINCT FROM OLD.seq OR NEW.time_ms IS DISTINCT FROM OLD.time_ms OR NEW.caller IS DISTINCT FROM OLD.caller
  OR NEW.action IS DISTINCT FROM OLD.action OR NEW.spiffe_id IS DISTINCT FROM OLD.spiffe_id OR NEW.serial IS DISTINCT FROM OLD.serial
  OR NEW.not_after IS DISTINCT FROM OLD.not_after OR NEW.outcome IS DISTINCT FROM OLD.outcome OR NEW.detail IS DISTINCT FROM OLD.detail)
EXECUTE FUNCTION brevis_audit_append_only();
CREATE TABLE audit_head (
  one BOOLEAN NOT NULL PRIMARY KEY DEFAULT TRUE CHECK (one),
  seq BIGINT  NOT NULL
);
INSERT INTO audit_head (seq) SELECT coalesce(max(seq), 0) FROM audit;
`,
  },
  {
    version: 4,
    name: 'authority life cycle',
    sql: `
ALTER TABLE authorities ADD COLUMN trusted_since_seq BIGINT;
ALTER TABLE authorities ADD COLUMN retired_at BIGINT;
ALTER TABLE authorities ADD COLUMN trust_until BIGINT;
ALTER TABLE authorities ADD COLUMN untrusted_at BIGINT;
UPDATE authorities SET trusted_since_seq = 1 WHERE state <> 'revoked';
UPDATE authorities SET state = 'retired', retired_at = created_at, trust_until = not_after
WHERE state = 'active' AND EXISTS (
  SELECT 1 FROM authorities b WHERE b.kind = authorities.kind AND b.state = 'active'
    AND (b.not_before > authorities.not_before OR (b.not_before = authorities.not_before AND b.id > authorities.id)));
CREATE UNIQUE INDEX authorities_one_active ON authorities (kind) WHERE state = 'active';

CREATE TABLE authority_cross_certs (
  subject_id TEXT COLLATE "C" NOT NULL,
  issuer_id  TEXT COLLATE "C" NOT NULL,
  der        BYTEA  NOT NULL,
  not_after  BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (subject_id, issuer_id)
);

CREATE TABLE authority_journal (
  seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  started_ms   BIGINT NOT NULL,
  finished_ms  BIGINT,
  kind         TEXT   NOT NULL CHECK (kind IN ${KINDS}),
  action       TEXT   NOT NULL,
  authority_id TEXT,
  caller       TEXT   NOT NULL,
  status       TEXT   NOT NULL CHECK (status IN ('pending', 'done', 'rolled_back')),
  plan         TEXT   NOT NULL ${jsonObject('plan')},
  detail       TEXT
);
CREATE INDEX authority_journal_pending ON authority_journal (status) WHERE status = 'pending';

CREATE TABLE agent_status (
  agent_id        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  bundle_sequence BIGINT NOT NULL,
  holdings        TEXT   NOT NULL ${jsonObject('holdings')},
  reported_at     BIGINT NOT NULL
);
`,
  },
  {
    version: 5,
    name: 'audit chain link check',
    // The same rule as SQLite's migration 5: a record must chain to the
    // last record (the genesis hash for the first), whoever writes it.
    // Appends already hold audit_head FOR UPDATE, so "the last record"
    // cannot move under the check; the rows of one INSERT are checked in
    // order, each seeing the ones before it (row-level BEFORE triggers see
    // the rows the same statement inserted earlier).
    sql: `
CREATE FUNCTION brevis_audit_chain_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.prev_hash IS DISTINCT FROM coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '${'0'.repeat(64)}') THEN
    RAISE EXCEPTION 'audit chain: a record must chain to the last record';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_chain_link BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION brevis_audit_chain_link();
`,
  },
];

/** The schema version this code writes and understands on PostgreSQL. */
export const PG_SCHEMA_VERSION: number = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.version;

const CREATE_MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS schema_migrations (
  version       BIGINT NOT NULL PRIMARY KEY,
  name          TEXT   NOT NULL,
  applied_at_ms BIGINT NOT NULL
)`;

/** The highest applied migration, or 0 for a new database. Reads only. */
export async function readPgSchemaVersion(s: Pick<PgSession, 'get'>): Promise<number> {
  const table = await s.get<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
  if (!table?.t) return 0;
  const row = await s.get<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations');
  return row?.version ?? 0;
}

/**
 * Brings the database up to the newest migration. Refuses (StoreError
 * 'CORRUPT') a database written by a newer version of the code. A database
 * already at the current version is not written to.
 *
 * @param nowMs the time recorded for each applied migration, milliseconds.
 * @param crashHook crash points for tests, the same as SQLite's (`migrate`
 *   in migrations.ts): `migrate:<version>:in-transaction` before the
 *   commit, `migrate:<version>:committed` after it.
 */
export async function migratePg(
  db: PgDb,
  nowMs: () => number,
  migrations: readonly Migration[] = PG_MIGRATIONS,
  crashHook: CrashHook = NO_CRASH,
): Promise<void> {
  const known = migrations.length === 0 ? 0 : migrations[migrations.length - 1]!.version;
  const current = await db.withSession(readPgSchemaVersion);
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
      // Another server may be migrating the same database: wait for it, then re-check.
      await s.run('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_CLASS, LOCKS.migrate]);
      await s.run(CREATE_MIGRATIONS_TABLE);
      if ((await readPgSchemaVersion(s)) >= m.version) return false;
      await s.run(m.sql);
      await s.run('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)', [m.version, m.name, nowMs()]);
      crashHook(`migrate:${m.version}:in-transaction`);
      return true;
    });
    if (applied) crashHook(`migrate:${m.version}:committed`);
  }
}
