/**
 * What the fleet has acknowledged and still holds, from the agents' own
 * reports (ReportAgentStatus): the bundle sequence each applied and, per
 * authority id, how many credentials chained to it each holds.
 */
import type { AgentRecord } from '../store/store.js';
import type { AgentStatus } from './lifecycle-store.js';
import type { LifecycleAuthority } from './model.js';

export interface FleetFacts {
  agents: readonly AgentRecord[];
  statuses: ReadonlyMap<string, AgentStatus>;
  nowSeconds: number;
  /** Agents seen within this many seconds count (the agent-SVID lifetime). */
  windowSeconds: number;
  /** Authority ids in the chain of the CA's own serving SVID. */
  serverChainIds: readonly string[];
}

/** Agents that count: not banned, seen within the window. Sorted by ID. */
export function liveAgents(f: FleetFacts): AgentRecord[] {
  return f.agents.filter((a) => !a.banned && a.lastSeenAt >= f.nowSeconds - f.windowSeconds).sort((a, b) => (a.agentId < b.agentId ? -1 : 1));
}

export interface Acknowledgements {
  agents: number;
  acknowledged: number;
  /** Live agents whose last applied bundle predates the authority. */
  missing: string[];
}

/**
 * Which live agents have applied a bundle that contains `a` (or, for an
 * intermediate, its root): their reported sequence is at least the one
 * from which `a` is trusted. An authority never published counts nobody.
 */
export function acknowledgements(a: LifecycleAuthority, f: FleetFacts): Acknowledgements {
  const live = liveAgents(f);
  const since = a.trustedSinceSeq;
  const missing = live.filter((agent) => since === null || (f.statuses.get(agent.agentId)?.bundleSequence ?? 0) < since).map((x) => x.agentId);
  return { agents: live.length, acknowledged: live.length - missing.length, missing };
}

export interface Outstanding {
  credentials: number;
  /** Live agents still holding credentials chained to the authority. */
  agents: string[];
}

/**
 * Credentials chained to authority `id` that live agents (and the CA
 * itself) still hold, by their last reports. Agents that never reported
 * count nothing: the count covers what the fleet says it holds.
 */
export function outstanding(id: string, f: FleetFacts): Outstanding {
  let credentials = f.serverChainIds.includes(id) ? 1 : 0;
  const agents: string[] = [];
  for (const agent of liveAgents(f)) {
    const n = f.statuses.get(agent.agentId)?.holdings[id] ?? 0;
    if (n > 0) {
      credentials += n;
      agents.push(agent.agentId);
    }
  }
  return { credentials, agents };
}
