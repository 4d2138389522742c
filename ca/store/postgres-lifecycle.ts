/**
 * The authority life cycle's storage (the same operations as
 * ca/rotation/lifecycle-store.ts) on the PostgreSQL store, shared by every
 * CA server. A transition is committed in one transaction with its journal
 * entry and its audit records (chained in the same transaction), and
 * announces itself on the `brevis_changes` channel so that the other
 * servers reload at once.
 *
 * Several servers: `withTransitionLock` holds a session advisory lock for
 * the whole of a transition (pending entry, key saves, commit), so
 * transitions from different servers never interleave, and a pending entry
 * seen while holding the lock was left by a server that died.
 */
import type { AgentStatus, JournalEntry, NewJournalEntry, SqliteLifecycleStore, TransitionCommit, AuthorityUpdate } from '../rotation/lifecycle-store.js';
import { NEXT_SEQUENCE } from '../rotation/lifecycle-store.js';
import {
  BUNDLE_SEQUENCE_KEY,
  SELECT_AUTHORITIES,
  SELECT_CROSS_CERTS,
  SELECT_JOURNAL,
  authorityFromRow,
  crossCertFromRow,
  journalFromRow,
  parseBundleSequence,
  parseHoldings,
  type AuthorityRow,
  type CrossCertRow,
  type JournalRow,
} from '../rotation/lifecycle-rows.js';
import type { LifecycleSnapshot } from '../rotation/model.js';
import { appendChainedAuditPg } from './postgres-audit-chain.js';
import type { PgDb, PgSession } from './postgres-db.js';
import { LOCKS, LOCK_CLASS } from './postgres-locks.js';
import { StoreError, type AuditRecord, type AuthorityKind } from './store.js';

/** The channel on which servers announce changes to each other (payload: see ca/ha/cluster-changes.ts). */
export const CHANGES_CHANNEL = 'brevis_changes';

/** The life cycle storage operations, whichever database holds them. */
export type LifecycleStorage = Pick<SqliteLifecycleStore, keyof SqliteLifecycleStore>;

async function readSequence(s: Pick<PgSession, 'get'>): Promise<number> {
  return parseBundleSequence((await s.get<{ value: string }>('SELECT value FROM meta WHERE key = $1', [BUNDLE_SEQUENCE_KEY]))?.value);
}

async function announce(s: PgSession): Promise<void> {
  // Delivered to listeners when (and only if) the transaction commits.
  await s.run('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, 'lifecycle']);
}

/** The life cycle's tables on a PostgreSQL store. */
export class PostgresLifecycleStore implements LifecycleStorage {
  constructor(private readonly db: PgDb) {}

  async snapshot(): Promise<LifecycleSnapshot> {
    // One transaction, REPEATABLE READ: authorities, cross certificates and
    // the sequence from the same moment, whatever other servers commit meanwhile.
    return this.db.withSession(async (s) => {
      await s.run('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      try {
        const rows = await s.all<AuthorityRow>(`${SELECT_AUTHORITIES} ORDER BY not_before, pos`);
        const cross = await s.all<CrossCertRow>(SELECT_CROSS_CERTS);
        const bundleSequence = await readSequence(s);
        return {
          authorities: rows.map(authorityFromRow),
          crossCerts: cross.map(crossCertFromRow),
          bundleSequence,
        };
      } finally {
        await s.client.query('COMMIT').catch(() => undefined);
      }
    });
  }

  /** Writes a pending journal entry (the first step of a transition that creates keys). Returns its seq. */
  async begin(e: NewJournalEntry): Promise<number> {
    const [row] = await this.db.query<{ seq: number }>(
      `INSERT INTO authority_journal (started_ms, kind, action, authority_id, caller, status, plan, detail)
       VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) RETURNING seq`,
      [e.startedMs, e.kind, e.action, e.authorityId, e.caller, JSON.stringify(e.plan), e.detail],
    );
    return row!.seq;
  }

  /** Applies a transition in one transaction. Returns the bundle sequence after it. */
  commit(c: TransitionCommit): Promise<number> {
    return this.db.transaction(async (s) => {
      let seq = await readSequence(s);
      if (c.bumpBundle) {
        seq++;
        await s.run('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [BUNDLE_SEQUENCE_KEY, String(seq)]);
      }
      // Updates first: retiring the old active authority before the new one
      // becomes active keeps the one-active-per-kind index satisfied.
      for (const u of c.updates ?? []) await this.#update(s, u);
      for (const a of c.inserts ?? []) {
        await s.run(
          `INSERT INTO authorities (id, kind, state, public_der, parent_id, key_ref, not_before, not_after, created_at,
             trusted_since_seq, retired_at, trust_until, untrusted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
          [a.id, a.kind, a.state, a.publicDer, a.parentId, a.keyRef, a.notBefore, a.notAfter, a.createdAt,
            a.trustedSinceSeq === NEXT_SEQUENCE ? seq : a.trustedSinceSeq, a.retiredAt, a.trustUntil, a.untrustedAt],
        );
      }
      for (const x of c.crossCerts ?? []) {
        await s.run('INSERT INTO authority_cross_certs (subject_id, issuer_id, der, not_after, created_at) VALUES ($1, $2, $3, $4, $5)', [
          x.subjectId, x.issuerId, x.der, x.notAfter, x.createdAt,
        ]);
      }
      const j = c.journal;
      if (c.pendingSeq !== undefined) {
        const changed = await s.run(
          `UPDATE authority_journal SET status = 'done', finished_ms = $1, authority_id = $2, plan = $3, detail = $4
           WHERE seq = $5 AND status = 'pending'`,
          [c.finishedMs, j.authorityId, JSON.stringify(j.plan), j.detail, c.pendingSeq],
        );
        if (changed !== 1) throw new StoreError('CONFLICT', `authority journal entry ${c.pendingSeq} is not pending`);
      } else {
        await s.run(
          `INSERT INTO authority_journal (started_ms, finished_ms, kind, action, authority_id, caller, status, plan, detail)
           VALUES ($1, $2, $3, $4, $5, $6, 'done', $7, $8)`,
          [j.startedMs, c.finishedMs, j.kind, j.action, j.authorityId, j.caller, JSON.stringify(j.plan), j.detail],
        );
      }
      await appendChainedAuditPg(s, c.audit);
      await announce(s);
      c.beforeCommit?.();
      return seq;
    });
  }

  /** Marks a pending entry rolled back, with its audit records. */
  abandon(seq: number, finishedMs: number, detail: string, audit: AuditRecord[]): Promise<void> {
    return this.db.transaction(async (s) => {
      await s.run(`UPDATE authority_journal SET status = 'rolled_back', finished_ms = $1, detail = $2 WHERE seq = $3 AND status = 'pending'`, [
        finishedMs, detail, seq,
      ]);
      await appendChainedAuditPg(s, audit);
      await announce(s);
    });
  }

  async pending(): Promise<JournalEntry[]> {
    return (await this.db.query<JournalRow>(`${SELECT_JOURNAL} WHERE status = 'pending' ORDER BY seq`)).map(journalFromRow);
  }

  /** The newest finished entry of a kind with one of `actions`, or undefined. */
  async lastDone(kind: AuthorityKind, actions: readonly string[]): Promise<JournalEntry | undefined> {
    const [row] = await this.db.query<JournalRow>(
      `${SELECT_JOURNAL} WHERE kind = $1 AND status = 'done' AND action = ANY($2::text[]) ORDER BY seq DESC LIMIT 1`,
      [kind, [...actions]],
    );
    return row && journalFromRow(row);
  }

  async journal(limit = 1000): Promise<JournalEntry[]> {
    return (await this.db.query<JournalRow>(`${SELECT_JOURNAL} ORDER BY seq DESC LIMIT $1`, [limit])).map(journalFromRow).reverse();
  }

  /**
   * Stores what an agent reports, with the audit records `audit` makes from
   * what it had reported before (undefined: never), in one transaction. The
   * row is locked first, so two servers hearing the same agent at once
   * still see each other's report as the previous one.
   */
  putAgentStatus(st: AgentStatus, audit: (previous: AgentStatus | undefined) => AuditRecord[]): Promise<void> {
    return this.db.transaction(async (s) => {
      await s.run('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`agent_status:${st.agentId}`]);
      const row = await s.get<{ bundle_sequence: number; holdings: string; reported_at: number }>(
        'SELECT bundle_sequence, holdings, reported_at FROM agent_status WHERE agent_id = $1',
        [st.agentId],
      );
      const previous = row && { agentId: st.agentId, bundleSequence: row.bundle_sequence, holdings: parseHoldings(row.holdings, st.agentId), reportedAt: row.reported_at };
      await s.run(
        `INSERT INTO agent_status (agent_id, bundle_sequence, holdings, reported_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (agent_id) DO UPDATE SET bundle_sequence = excluded.bundle_sequence, holdings = excluded.holdings,
           reported_at = excluded.reported_at`,
        [st.agentId, st.bundleSequence, JSON.stringify(st.holdings), st.reportedAt],
      );
      await appendChainedAuditPg(s, audit(previous));
    });
  }

  async agentStatuses(): Promise<Map<string, AgentStatus>> {
    const rows = await this.db.query<{ agent_id: string; bundle_sequence: number; holdings: string; reported_at: number }>(
      'SELECT agent_id, bundle_sequence, holdings, reported_at FROM agent_status',
    );
    const out = new Map<string, AgentStatus>();
    for (const r of rows) {
      out.set(r.agent_id, { agentId: r.agent_id, bundleSequence: r.bundle_sequence, holdings: parseHoldings(r.holdings, r.agent_id), reportedAt: r.reported_at });
    }
    return out;
  }

  /**
   * Runs `fn` holding the cluster-wide transition lock (waiting for it if
   * another server holds it). The lock lives on a connection of its own
   * and is released when `fn` settles, or by PostgreSQL when this process
   * dies and its connection drops.
   */
  withTransitionLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.db.withSession(async (s) => {
      await s.run('SELECT pg_advisory_lock($1, $2)', [LOCK_CLASS, LOCKS.lifecycle]);
      try {
        return await fn();
      } finally {
        await s.run('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCKS.lifecycle]).catch(() => undefined);
      }
    });
  }

  /**
   * A value that changes with every committed or rolled-back transition
   * (cheap: for polling when a notification may have been missed).
   */
  async version(): Promise<string> {
    const [row] = await this.db.query<{ v: string }>(
      `SELECT concat_ws(':', (SELECT max(seq) FROM authority_journal), (SELECT count(*) FROM authority_journal WHERE status <> 'pending'),
         (SELECT value FROM meta WHERE key = $1)) AS v`,
      [BUNDLE_SEQUENCE_KEY],
    );
    return row?.v ?? '';
  }

  async #update(s: PgSession, u: AuthorityUpdate): Promise<void> {
    const sets: string[] = [];
    const params: unknown[] = [];
    const col = (name: string, v: unknown) => {
      params.push(v);
      sets.push(`${name} = $${params.length}`);
    };
    if (u.state !== undefined) col('state', u.state);
    if (u.retiredAt !== undefined) col('retired_at', u.retiredAt);
    if (u.trustUntil !== undefined) col('trust_until', u.trustUntil);
    if (u.untrustedAt !== undefined) col('untrusted_at', u.untrustedAt);
    if (sets.length === 0) return;
    params.push(u.id);
    const changed = await s.run(`UPDATE authorities SET ${sets.join(', ')} WHERE id = $${params.length}`, params);
    if (changed !== 1) throw new StoreError('CONFLICT', `no authority ${u.id}`);
  }
}
