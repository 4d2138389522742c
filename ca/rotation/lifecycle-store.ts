/**
 * Storage of the authority life cycle on the CA's SQLite database
 * (migration 4): authorities with their trust bookkeeping, cross-signed
 * certificates, the bundle sequence, the journal of transitions and what
 * agents report. A transition is committed in one transaction together
 * with its journal entry and its audit records (hash-chained in the same
 * transaction), so it either happened completely or not at all.
 */
import type { Db, Session } from '../store/db.js';
import { appendChainedAudit } from '../audit/sqlite-audit-chain.js';
import { StoreError, type AuditRecord, type AuthorityKind, type AuthorityState } from '../store/store.js';
import type { CrossCert, LifecycleAuthority, LifecycleSnapshot } from './model.js';
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
} from './lifecycle-rows.js';


/** Put as `trustedSinceSeq` of an inserted authority: the sequence this commit's bump produces. */
export const NEXT_SEQUENCE = -1;

export type JournalStatus = 'pending' | 'done' | 'rolled_back';

/** What a transition did or was going to do: enough to roll it back or undo it later. */
export interface TransitionPlan {
  /** Key files the transition creates (deleted when a pending transition is rolled back). */
  keyRefs?: string[];
  /** Activation: the authorities that stopped signing (to roll back to). */
  previousIds?: string[];
  /** Activation: the authorities that started signing. */
  activatedIds?: string[];
  [k: string]: unknown;
}

export interface JournalEntry {
  seq: number;
  startedMs: number;
  finishedMs: number | null;
  kind: AuthorityKind;
  action: string;
  authorityId: string | null;
  caller: string;
  status: JournalStatus;
  plan: TransitionPlan;
  detail: string | null;
}

export type NewJournalEntry = Pick<JournalEntry, 'startedMs' | 'kind' | 'action' | 'authorityId' | 'caller' | 'plan' | 'detail'>;

export interface AuthorityUpdate {
  id: string;
  state?: AuthorityState;
  retiredAt?: number | null;
  trustUntil?: number | null;
  untrustedAt?: number | null;
}

export interface TransitionCommit {
  /** The pending entry this commit finishes; absent: the entry is written as done now. */
  pendingSeq?: number;
  journal: NewJournalEntry;
  finishedMs: number;
  inserts?: LifecycleAuthority[];
  updates?: AuthorityUpdate[];
  crossCerts?: CrossCert[];
  /** The trust data changed: the bundle sequence goes up by one. */
  bumpBundle?: boolean;
  audit: AuditRecord[];
  /** Runs inside the transaction after every write, before COMMIT (crash tests). */
  beforeCommit?: () => void;
}

/** What an agent last reported. */
export interface AgentStatus {
  agentId: string;
  bundleSequence: number;
  /** Authority id -> credentials held that chain to it. */
  holdings: Record<string, number>;
  reportedAt: number;
}

async function readSequence(s: Session): Promise<number> {
  return parseBundleSequence((await s.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', [BUNDLE_SEQUENCE_KEY]))?.value);
}

/** The life cycle's tables on the CA's SQLite connection. */
export class SqliteLifecycleStore {
  constructor(private readonly db: Db) {}

  snapshot(): Promise<LifecycleSnapshot> {
    return this.db.exclusive(async (s) => {
      const rows = await s.all<AuthorityRow>(`${SELECT_AUTHORITIES} ORDER BY not_before, rowid`);
      const cross = await s.all<CrossCertRow>(SELECT_CROSS_CERTS);
      return {
        authorities: rows.map(authorityFromRow),
        crossCerts: cross.map(crossCertFromRow),
        bundleSequence: await readSequence(s),
      };
    });
  }

  /** Writes a pending journal entry (the first step of a transition that creates files). Returns its seq. */
  begin(e: NewJournalEntry): Promise<number> {
    return this.db.transaction(async (s) => {
      const r = await s.run(
        `INSERT INTO authority_journal (started_ms, kind, action, authority_id, caller, status, plan, detail)
         VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)`,
        [e.startedMs, e.kind, e.action, e.authorityId, e.caller, JSON.stringify(e.plan), e.detail],
      );
      return r.lastId;
    });
  }

  /** Applies a transition in one transaction. Returns the bundle sequence after it. */
  commit(c: TransitionCommit): Promise<number> {
    return this.db.transaction(async (s) => {
      let seq = await readSequence(s);
      if (c.bumpBundle) {
        seq++;
        await s.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [BUNDLE_SEQUENCE_KEY, String(seq)]);
      }
      // Updates first: retiring the old active authority before the new one
      // becomes active keeps the one-active-per-kind index satisfied.
      for (const u of c.updates ?? []) await this.#update(s, u);
      for (const a of c.inserts ?? []) {
        await s.run(
          `INSERT INTO authorities (id, kind, state, public_der, parent_id, key_ref, not_before, not_after, created_at,
             trusted_since_seq, retired_at, trust_until, untrusted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [a.id, a.kind, a.state, a.publicDer, a.parentId, a.keyRef, a.notBefore, a.notAfter, a.createdAt,
            a.trustedSinceSeq === NEXT_SEQUENCE ? seq : a.trustedSinceSeq, a.retiredAt, a.trustUntil, a.untrustedAt],
        );
      }
      for (const x of c.crossCerts ?? []) {
        await s.run('INSERT INTO authority_cross_certs (subject_id, issuer_id, der, not_after, created_at) VALUES (?, ?, ?, ?, ?)', [
          x.subjectId, x.issuerId, x.der, x.notAfter, x.createdAt,
        ]);
      }
      const j = c.journal;
      if (c.pendingSeq !== undefined) {
        const { changes } = await s.run(
          `UPDATE authority_journal SET status = 'done', finished_ms = ?, authority_id = ?, plan = ?, detail = ?
           WHERE seq = ? AND status = 'pending'`,
          [c.finishedMs, j.authorityId, JSON.stringify(j.plan), j.detail, c.pendingSeq],
        );
        if (changes !== 1) throw new StoreError('CONFLICT', `authority journal entry ${c.pendingSeq} is not pending`);
      } else {
        await s.run(
          `INSERT INTO authority_journal (started_ms, finished_ms, kind, action, authority_id, caller, status, plan, detail)
           VALUES (?, ?, ?, ?, ?, ?, 'done', ?, ?)`,
          [j.startedMs, c.finishedMs, j.kind, j.action, j.authorityId, j.caller, JSON.stringify(j.plan), j.detail],
        );
      }
      await appendChainedAudit(s, c.audit);
      c.beforeCommit?.();
      return seq;
    });
  }

  /** Marks a pending entry rolled back, with its audit records. */
  abandon(seq: number, finishedMs: number, detail: string, audit: AuditRecord[]): Promise<void> {
    return this.db.transaction(async (s) => {
      await s.run(`UPDATE authority_journal SET status = 'rolled_back', finished_ms = ?, detail = ? WHERE seq = ? AND status = 'pending'`, [
        finishedMs, detail, seq,
      ]);
      await appendChainedAudit(s, audit);
    });
  }

  pending(): Promise<JournalEntry[]> {
    return this.db.exclusive(async (s) => (await s.all<JournalRow>(`${SELECT_JOURNAL} WHERE status = 'pending' ORDER BY seq`)).map(journalFromRow));
  }

  /** The newest finished entry of a kind with one of `actions`, or undefined. */
  lastDone(kind: AuthorityKind, actions: readonly string[]): Promise<JournalEntry | undefined> {
    return this.db.exclusive(async (s) => {
      const row = await s.get<JournalRow>(
        `${SELECT_JOURNAL} WHERE kind = ? AND status = 'done' AND action IN (SELECT value FROM json_each(?)) ORDER BY seq DESC LIMIT 1`,
        [kind, JSON.stringify(actions)],
      );
      return row && journalFromRow(row);
    });
  }

  journal(limit = 1000): Promise<JournalEntry[]> {
    return this.db.exclusive(async (s) => (await s.all<JournalRow>(`${SELECT_JOURNAL} ORDER BY seq DESC LIMIT ?`, [limit])).map(journalFromRow).reverse());
  }

  /**
   * Stores what an agent reports, with the audit records `audit` makes from
   * what it had reported before (undefined: never), in one transaction.
   */
  putAgentStatus(st: AgentStatus, audit: (previous: AgentStatus | undefined) => AuditRecord[]): Promise<void> {
    return this.db.transaction(async (s) => {
      const row = await s.get<{ bundle_sequence: number; holdings: string; reported_at: number }>(
        'SELECT bundle_sequence, holdings, reported_at FROM agent_status WHERE agent_id = ?',
        [st.agentId],
      );
      const previous = row && { agentId: st.agentId, bundleSequence: row.bundle_sequence, holdings: parseHoldings(row.holdings, st.agentId), reportedAt: row.reported_at };
      await s.run(
        `INSERT INTO agent_status (agent_id, bundle_sequence, holdings, reported_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (agent_id) DO UPDATE SET bundle_sequence = excluded.bundle_sequence, holdings = excluded.holdings,
           reported_at = excluded.reported_at`,
        [st.agentId, st.bundleSequence, JSON.stringify(st.holdings), st.reportedAt],
      );
      await appendChainedAudit(s, audit(previous));
    });
  }

  agentStatuses(): Promise<Map<string, AgentStatus>> {
    return this.db.exclusive(async (s) => {
      const rows = await s.all<{ agent_id: string; bundle_sequence: number; holdings: string; reported_at: number }>(
        'SELECT agent_id, bundle_sequence, holdings, reported_at FROM agent_status',
      );
      const out = new Map<string, AgentStatus>();
      for (const r of rows) {
        out.set(r.agent_id, { agentId: r.agent_id, bundleSequence: r.bundle_sequence, holdings: parseHoldings(r.holdings, r.agent_id), reportedAt: r.reported_at });
      }
      return out;
    });
  }

  async #update(s: Session, u: AuthorityUpdate): Promise<void> {
    const sets: string[] = [];
    const params: unknown[] = [];
    const col = (name: string, v: unknown) => {
      sets.push(`${name} = ?`);
      params.push(v);
    };
    if (u.state !== undefined) col('state', u.state);
    if (u.retiredAt !== undefined) col('retired_at', u.retiredAt);
    if (u.trustUntil !== undefined) col('trust_until', u.trustUntil);
    if (u.untrustedAt !== undefined) col('untrusted_at', u.untrustedAt);
    if (sets.length === 0) return;
    const { changes } = await s.run(`UPDATE authorities SET ${sets.join(', ')} WHERE id = ?`, [...params, u.id]);
    if (changes !== 1) throw new StoreError('CONFLICT', `no authority ${u.id}`);
  }
}
