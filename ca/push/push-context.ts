/**
 * What the node API's push RPCs need: the change hub, the authorities
 * agents must stop relying on, and where agent reports go (with their
 * audit records: an acknowledgement when an agent applies a newer bundle,
 * and a record when it no longer holds anything chained to a tainted or
 * revoked authority).
 */
import type { AuditRecord } from '../store/store.js';
import type { AgentStatus, SqliteLifecycleStore } from '../rotation/lifecycle-store.js';
import type { LifecycleSnapshot } from '../rotation/model.js';
import type { AuthorityLifecycle } from '../rotation/lifecycle.js';
import { ChangeHub } from './change-hub.js';

export interface PushContext {
  hub: ChangeHub;
  /** Ids of tainted and revoked authorities (X.509 SKI hex, SSH fingerprints). */
  untrustedIds(): string[];
  /** Stores an agent's report. */
  report(agentId: string, bundleSequence: number, holdings: Record<string, number>, now: Date): Promise<void>;
}

export function createPushContext(d: { hub: ChangeHub; snapshot: () => LifecycleSnapshot; statusSink: Pick<SqliteLifecycleStore, 'putAgentStatus'> }): PushContext {
  const untrustedIds = () => d.snapshot().authorities.filter((a) => a.state === 'tainted' || a.state === 'revoked').map((a) => a.id);
  return {
    hub: d.hub,
    untrustedIds,
    report: (agentId, bundleSequence, holdings, now) => {
      const status: AgentStatus = { agentId, bundleSequence, holdings, reportedAt: Math.floor(now.getTime() / 1000) };
      return d.statusSink.putAgentStatus(status, (previous) => {
        const base = { timeMs: now.getTime(), caller: agentId, spiffeId: agentId, serial: null, notAfter: null, outcome: 'success' as const };
        const out: AuditRecord[] = [];
        const before = previous?.bundleSequence ?? 0;
        if (bundleSequence > before) out.push({ ...base, action: 'agent.ack', detail: `applied bundle sequence ${bundleSequence} (was ${before || 'none'})` });
        const cleared = untrustedIds().filter((id) => (previous?.holdings[id] ?? 0) > 0 && !(holdings[id] ?? 0));
        if (cleared.length) out.push({ ...base, action: 'agent.replaced', detail: `holds no more credentials chained to ${cleared.join(', ')}` });
        return out;
      });
    },
  };
}

/**
 * The push context of a running CA: life-cycle changes are published to
 * connected agents. `close` ends every stream (before the server stops).
 */
export function createPush(lifecycle: Pick<AuthorityLifecycle, 'onChange' | 'snapshot' | 'putAgentStatus' | 'x509'>): { push: PushContext; close(): void } {
  const hub = new ChangeHub(() => lifecycle.x509.bundle().sequence);
  const off = lifecycle.onChange((c) => hub.publish(c.bundleChanged ? 'bundle' : 'authorities'));
  const push = createPushContext({ hub, snapshot: () => lifecycle.snapshot, statusSink: lifecycle });
  return {
    push,
    close: () => {
      off();
      hub.close();
    },
  };
}
