/**
 * Assembles the dashboard from the CA's parts: the store, the audit trail
 * and its chain check, the activity history kept by the metrics, and the
 * authorization rules (to count each agent's entries).
 */
import type { Logger } from 'pino';
import type { Clock } from '../../spiffe/clock.js';
import { authorizedEntries } from '../authz/authorized-entries.js';
import type { DashboardConfig } from '../config/config.js';
import type { ActivityHistory } from '../metrics/activity-history.js';
import type { AuditRecord, Store } from '../store/store.js';
import { DashboardModel, type AuditCheck, type DashboardSources } from './dashboard-model.js';
import { startDashboard, type DashboardServer } from './dashboard-server.js';

export interface CaDashboardDeps {
  trustDomain: string;
  clock: Clock;
  store: Store;
  history: ActivityHistory;
  logger: Logger;
  /** Audit records with seq above `afterSeq`; default: the store's listAudit, filtered. */
  readAudit?: (o: { afterSeq: number; sinceMs?: number; limit: number }) => Promise<AuditRecord[]>;
  verifyAudit?: () => Promise<AuditCheck>;
  rotationProgress?: DashboardSources['rotationProgress'];
  /** The longest lifetime a credential can have, seconds (how far back the audit trail is read at start). */
  maxCredentialTtlSeconds: number;
  refreshMs?: number;
}

export async function startCaDashboard(config: DashboardConfig, deps: CaDashboardDeps): Promise<DashboardServer & { model: DashboardModel }> {
  const { store } = deps;
  const readAudit =
    deps.readAudit ??
    (async (o: { afterSeq: number; sinceMs?: number; limit: number }) =>
      (await store.listAudit({ ...(o.sinceMs !== undefined ? { sinceMs: o.sinceMs } : {}) })).filter((r) => (r.seq ?? 0) > o.afterSeq).slice(0, o.limit));
  const model = new DashboardModel({
    trustDomain: deps.trustDomain,
    clock: deps.clock,
    store,
    entriesOf: async (agent, now) => (await authorizedEntries(store, deps.trustDomain, agent, now)).length,
    history: deps.history,
    readAudit,
    ...(deps.verifyAudit ? { verifyAudit: deps.verifyAudit } : {}),
    ...(deps.rotationProgress ? { rotationProgress: deps.rotationProgress } : {}),
    lookbackMs: (deps.maxCredentialTtlSeconds + 3600) * 1000,
  });
  const server = await startDashboard({ config, model, logger: deps.logger, ...(deps.refreshMs ? { refreshMs: deps.refreshMs } : {}) });
  return Object.assign(server, { model });
}
