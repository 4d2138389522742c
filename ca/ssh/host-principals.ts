/**
 * Which host names an agent may put into its node's host certificate.
 * Host names are bound by the admin, never chosen by the node: those of the
 * join token the agent redeemed, plus those of every node entry (parent
 * `spiffe://TD/brevis/server`) whose selectors are all among the agent's
 * node selectors, the same matching rule as for authorized entries.
 */
import type { AgentRecord, Store } from '../store/store.js';
import { serverId } from '../authz/authorized-entries.js';
import { formatSelector, selectorsSubset } from '../../spiffe/selector.js';

export async function agentHostPrincipals(
  store: Pick<Store, 'listEntriesByParents'>,
  trustDomain: string,
  agent: Pick<AgentRecord, 'selectors' | 'sshHostPrincipals'>,
  nowSeconds: number,
): Promise<string[]> {
  const have = new Set(agent.selectors.map(formatSelector));
  const names = new Set(agent.sshHostPrincipals ?? []);
  for (const e of await store.listEntriesByParents([serverId(trustDomain)])) {
    const live = e.expiresAt === null || e.expiresAt > nowSeconds;
    if (!live || !e.ssh || e.selectors.length === 0 || !selectorsSubset(e.selectors, have)) continue;
    for (const n of e.ssh.hostPrincipals) names.add(n);
  }
  return [...names];
}
