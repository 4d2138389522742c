/**
 * Which registration entries belong to an agent (SPIRE's parent semantics):
 * - entries whose parent is the agent's own ID;
 * - for every node entry (parent = the server ID `spiffe://TD/brevis/server`)
 *   whose selectors are all among the agent's node selectors, the entries
 *   parented to that node entry's SPIFFE ID;
 * - recursively, entries parented to any entry found so far.
 * Expired entries are left out.
 */
import type { AgentRecord, EntryRecord, Store } from '../store/store.js';
import { formatSelector, selectorsSubset } from '../../spiffe/selector.js';

/** A guard against parent cycles and absurd trees. */
const MAX_DEPTH = 8;

export function serverId(trustDomain: string): string {
  return `spiffe://${trustDomain}/brevis/server`;
}

export async function authorizedEntries(
  store: Pick<Store, 'listEntriesByParents'>,
  trustDomain: string,
  agent: Pick<AgentRecord, 'agentId' | 'selectors'>,
  nowSeconds: number,
): Promise<EntryRecord[]> {
  const have = new Set(agent.selectors.map(formatSelector));
  const nodeEntries = (await store.listEntriesByParents([serverId(trustDomain)])).filter(
    (e) => live(e, nowSeconds) && e.selectors.length > 0 && selectorsSubset(e.selectors, have),
  );
  const result = new Map<string, EntryRecord>();
  const seenParents = new Set<string>();
  let frontier = [agent.agentId, ...nodeEntries.map((e) => e.spiffeId)];
  for (let depth = 0; depth < MAX_DEPTH && frontier.length > 0; depth++) {
    const parents = frontier.filter((p) => !seenParents.has(p));
    parents.forEach((p) => seenParents.add(p));
    if (parents.length === 0) break;
    const children = await store.listEntriesByParents(parents);
    const next: string[] = [];
    for (const e of children) {
      if (!live(e, nowSeconds) || result.has(e.id)) continue;
      result.set(e.id, e);
      next.push(e.spiffeId);
    }
    frontier = next;
  }
  return [...result.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function live(e: EntryRecord, now: number): boolean {
  return e.expiresAt === null || e.expiresAt > now;
}
