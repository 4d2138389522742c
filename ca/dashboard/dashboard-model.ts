/**
 * What the dashboard shows, as plain data: read from the store, the audit
 * trail (followed incrementally by sequence number) and the in-memory
 * activity history, at most once per refresh however many browsers watch.
 */
import type { Clock } from '../../spiffe/clock.js';
import type { ActivityHistory, IssuanceKind, MinuteCounts } from '../metrics/activity-history.js';
import { agentState } from '../metrics/store-gauges.js';
import type { AgentRecord, AuditRecord, AuthorityKind, AuthorityState, Store } from '../store/store.js';
import { CredentialTracker, type CredentialHealth, type CredentialView } from './credential-tracker.js';

/** The result of walking the audit hash chain. */
export type AuditCheck = { intact: true; count: number } | { intact: false; count: number; brokenSeq: number; reason: string };

export interface DashboardSources {
  trustDomain: string;
  clock: Clock;
  store: Pick<Store, 'listAgents' | 'listAuthorities' | 'listEntries'>;
  /** How many entries an agent is authorized for. */
  entriesOf(agent: AgentRecord, nowSeconds: number): Promise<number>;
  history: Pick<ActivityHistory, 'series'>;
  /** Audit records with seq above `afterSeq`, oldest first, at most `limit`; only at or after `sinceMs` when given. */
  readAudit(o: { afterSeq: number; sinceMs?: number; limit: number }): Promise<AuditRecord[]>;
  /** Walks the audit hash chain; without it the dashboard says "not available". */
  verifyAudit?: () => Promise<AuditCheck>;
  /** Rotation progress by authority id, as label/value pairs (acknowledgements, outstanding credentials). */
  rotationProgress?: () => Promise<ReadonlyMap<string, ReadonlyArray<readonly [string, string]>>>;
  /** How far back the audit trail is read at start: the longest credential lifetime, ms. */
  lookbackMs: number;
  /** How often the audit chain is verified, ms (default 60 s: it reads the whole trail). */
  verifyEveryMs?: number;
}

export interface AuthorityRow {
  id: string;
  kind: AuthorityKind;
  state: AuthorityState;
  parentId: string | null;
  notBefore: number;
  /** Seconds; null for keys that do not expire (SSH CAs). */
  notAfter: number | null;
  progress: ReadonlyArray<readonly [string, string]>;
}

export interface AgentRow {
  agentId: string;
  attestationType: string;
  state: 'active' | 'expired' | 'banned';
  lastSyncAt: number;
  syncLagSeconds: number;
  svidExpiresAt: number;
  /** Authorized entries; null when not computed (beyond MAX_AGENTS_DETAILED). */
  entries: number | null;
  /** Unexpired workload X.509-SVIDs this agent holds. */
  workloadSvids: number;
}

export interface DashboardSnapshot {
  generatedAtMs: number;
  trustDomain: string;
  summary: {
    agents: Record<AgentRow['state'], number>;
    entries: number;
    credentials: Record<CredentialHealth, number>;
    issuedLastHour: Record<IssuanceKind, number>;
    errorsLastHour: number;
  };
  authorities: AuthorityRow[];
  agents: AgentRow[];
  /** Least remaining life first, at most MAX_CREDENTIALS_LISTED; the summary counts them all. */
  credentials: CredentialView[];
  rate: MinuteCounts[];
  audit: {
    recent: AuditRecord[];
    chain: { status: 'intact' | 'broken' | 'pending' | 'not available'; count: number; checkedAtMs: number | null; detail: string };
  };
}

/** Agents whose entry count is computed (one store query each); the rest show none. */
export const MAX_AGENTS_DETAILED = 200;
export const MAX_CREDENTIALS_LISTED = 200;
const AUDIT_PAGE = 5000;
/** SSH CA keys do not expire; their records say 9999-12-31. */
const NO_EXPIRY_AFTER = 253_402_300_000;

export class DashboardModel {
  readonly #s: DashboardSources;
  readonly #tracker = new CredentialTracker();
  #seeded = false;
  #inflight: Promise<DashboardSnapshot> | null = null;
  #check: DashboardSnapshot['audit']['chain'];
  #verifying: Promise<void> | null = null;

  constructor(sources: DashboardSources) {
    this.#s = sources;
    this.#check = sources.verifyAudit
      ? { status: 'pending', count: 0, checkedAtMs: null, detail: 'checking the audit hash chain' }
      : { status: 'not available', count: 0, checkedAtMs: null, detail: 'this CA has no audit chain verification' };
  }

  /** A fresh snapshot; concurrent callers share one read. */
  snapshot(): Promise<DashboardSnapshot> {
    return (this.#inflight ??= this.#build().finally(() => {
      this.#inflight = null;
    }));
  }

  async #build(): Promise<DashboardSnapshot> {
    const s = this.#s;
    await this.#followAudit();
    this.#maybeVerify();
    const nowMs = s.clock.now().getTime();
    const now = Math.floor(nowMs / 1000);
    const [agents, authorities, entries, progress] = await Promise.all([
      s.store.listAgents(),
      s.store.listAuthorities(),
      s.store.listEntries(),
      s.rotationProgress ? s.rotationProgress().catch(() => new Map()) : Promise.resolve(new Map()),
    ]);
    const credentials = this.#tracker.credentials(nowMs);
    const svidsByHolder = new Map<string, number>();
    for (const c of credentials) if (c.kind === 'x509' && c.health !== 'expired') svidsByHolder.set(c.holder, (svidsByHolder.get(c.holder) ?? 0) + 1);

    agents.sort((a, b) => a.lastSeenAt - b.lastSeenAt || (a.agentId < b.agentId ? -1 : 1));
    const agentRows: AgentRow[] = await Promise.all(
      agents.map(async (a, i) => ({
        agentId: a.agentId,
        attestationType: a.attestationType,
        state: agentState(a, now),
        lastSyncAt: a.lastSeenAt,
        syncLagSeconds: Math.max(0, now - a.lastSeenAt),
        svidExpiresAt: a.expiresAt,
        entries: i < MAX_AGENTS_DETAILED && !a.banned ? await s.entriesOf(a, now) : null,
        workloadSvids: svidsByHolder.get(a.agentId) ?? 0,
      })),
    );
    const summaryAgents = { active: 0, expired: 0, banned: 0 };
    for (const a of agentRows) summaryAgents[a.state]++;
    const health = { green: 0, yellow: 0, red: 0, expired: 0 };
    for (const c of credentials) health[c.health]++;
    const rate = s.history.series();
    const issuedLastHour = { x509: 0, ssh_user: 0, ssh_host: 0 };
    let errorsLastHour = 0;
    for (const m of rate) {
      for (const k of Object.keys(issuedLastHour) as IssuanceKind[]) issuedLastHour[k] += m.issued[k];
      errorsLastHour += m.errors;
    }
    const kindOrder: AuthorityKind[] = ['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host'];
    return {
      generatedAtMs: nowMs,
      trustDomain: s.trustDomain,
      summary: { agents: summaryAgents, entries: entries.length, credentials: health, issuedLastHour, errorsLastHour },
      authorities: authorities
        .map((a) => ({
          id: a.id,
          kind: a.kind,
          state: a.state,
          parentId: a.parentId,
          notBefore: a.notBefore,
          notAfter: a.notAfter >= NO_EXPIRY_AFTER ? null : a.notAfter,
          progress: (progress.get(a.id) as AuthorityRow['progress'] | undefined) ?? [],
        }))
        .sort((a, b) => kindOrder.indexOf(a.kind) - kindOrder.indexOf(b.kind) || a.notBefore - b.notBefore),
      agents: agentRows,
      credentials: credentials.slice(0, MAX_CREDENTIALS_LISTED),
      rate,
      audit: { recent: this.#tracker.recentAudit(), chain: this.#check },
    };
  }

  /** Reads audit records added since the last read (at the first read: those of the lookback window). */
  async #followAudit(): Promise<void> {
    const s = this.#s;
    const sinceMs = this.#seeded ? undefined : s.clock.now().getTime() - s.lookbackMs;
    for (;;) {
      const page = await s.readAudit({ afterSeq: this.#tracker.lastSeq, limit: AUDIT_PAGE, ...(sinceMs !== undefined ? { sinceMs } : {}) });
      this.#tracker.ingest(page);
      if (page.length < AUDIT_PAGE) break;
    }
    this.#seeded = true;
  }

  /** Starts a chain verification when the last one is old enough; the snapshot shows the latest result. */
  #maybeVerify(): void {
    const verify = this.#s.verifyAudit;
    if (!verify || this.#verifying) return;
    const nowMs = this.#s.clock.now().getTime();
    if (this.#check.checkedAtMs !== null && nowMs - this.#check.checkedAtMs < (this.#s.verifyEveryMs ?? 60_000)) return;
    this.#verifying = verify().then(
      (v) => {
        const at = this.#s.clock.now().getTime();
        this.#check = v.intact
          ? { status: 'intact', count: v.count, checkedAtMs: at, detail: `${v.count} records, hash chain intact` }
          : { status: 'broken', count: v.count, checkedAtMs: at, detail: `record ${v.brokenSeq}: ${v.reason}` };
      },
      (e: unknown) => {
        this.#check = { status: 'pending', count: 0, checkedAtMs: this.#s.clock.now().getTime(), detail: `the check failed: ${(e as Error).message}` };
      },
    ).finally(() => {
      this.#verifying = null;
    });
  }

  /** Resolves once a verification in progress has finished. */
  async settled(): Promise<void> {
    await this.#verifying;
  }
}
