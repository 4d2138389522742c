/**
 * Which registration entries belong to an agent (SPIRE's parent semantics):
 * - entries whose parent is the agent's own ID;
 * - for every node entry (parent = the server ID `spiffe://TD/brevis/server`)
 *   whose selectors are all among the agent's node selectors, the entries
 *   parented to that node entry's SPIFFE ID;
 * - recursively, entries parented to any entry found so far.
 * Expired entries are left out.
 *
 * Every node API call asks this (which entries may this agent mint for?),
 * and an agent with 10,000 entries makes it a walk over 10,000 records. So
 * the answer is kept per agent while the store says its entries have not
 * changed (`Store.entriesRevision`): exact for the writes of this process,
 * and at most `maxAgeMs` old (plus the store's own read-cache window) for
 * writers outside it. A store without `entriesRevision` (PostgreSQL, shared
 * by several servers) is asked every time. The cached answer also ends when
 * the first entry in it expires.
 */
import type { AgentRecord, EntryRecord, Store } from '../store/store.js';
import { formatSelector, selectorsSubset } from '../../spiffe/selector.js';

type EntriesStore = Pick<Store, 'listEntriesByParents' | 'entriesRevision'>;

/** Agents whose answers are kept at most; the oldest are forgotten first. */
const MAX_AGENTS = 10_000;

interface Answer {
  /** The agent's selectors, formatted and sorted: a re-attested agent with other selectors gets a new answer. */
  selectorsKey: string;
  revision: number;
  computedAtMs: number;
  /** Seconds: the earliest expiry among the entries the answer depends on. */
  validUntil: number;
  entries: readonly EntryRecord[];
  byId: ReadonlyMap<string, EntryRecord>;
}

const answers = new WeakMap<object, Map<string, Answer>>();

/** A guard against parent cycles and absurd trees. */
const MAX_DEPTH = 8;

export function serverId(trustDomain: string): string {
  return `spiffe://${trustDomain}/brevis/server`;
}

/** The entries an agent may mint for, sorted by id (frozen records: do not change them). */
export async function authorizedEntries(
  store: EntriesStore,
  trustDomain: string,
  agent: Pick<AgentRecord, 'agentId' | 'selectors'>,
  nowSeconds: number,
): Promise<readonly EntryRecord[]> {
  return (await answerFor(store, trustDomain, agent, nowSeconds)).entries;
}

/** The same entries by id. */
export async function authorizedEntriesById(
  store: EntriesStore,
  trustDomain: string,
  agent: Pick<AgentRecord, 'agentId' | 'selectors'>,
  nowSeconds: number,
): Promise<ReadonlyMap<string, EntryRecord>> {
  return (await answerFor(store, trustDomain, agent, nowSeconds)).byId;
}

async function answerFor(store: EntriesStore, trustDomain: string, agent: Pick<AgentRecord, 'agentId' | 'selectors'>, nowSeconds: number): Promise<Answer> {
  const before = store.entriesRevision?.();
  const selectorsKey = agent.selectors.map(formatSelector).sort().join('\n');
  const byAgent = before ? answers.get(store) : undefined;
  const known = byAgent?.get(agent.agentId);
  if (
    before &&
    known &&
    known.revision === before.revision &&
    known.selectorsKey === selectorsKey &&
    nowSeconds < known.validUntil &&
    performance.now() - known.computedAtMs < before.maxAgeMs
  ) {
    return known;
  }
  const computedAtMs = performance.now();
  const { entries, validUntil } = await compute(store, trustDomain, agent, nowSeconds);
  const answer: Answer = { selectorsKey, revision: before?.revision ?? 0, computedAtMs, validUntil, entries, byId: new Map(entries.map((e) => [e.id, e])) };
  // Kept only when no entry was written while it was computed.
  if (before && store.entriesRevision?.().revision === before.revision && before.maxAgeMs > 0) {
    let m = answers.get(store);
    if (!m) answers.set(store, (m = new Map()));
    m.delete(agent.agentId);
    if (m.size >= MAX_AGENTS) m.delete(m.keys().next().value!);
    m.set(agent.agentId, answer);
  }
  return answer;
}

async function compute(
  store: EntriesStore,
  trustDomain: string,
  agent: Pick<AgentRecord, 'agentId' | 'selectors'>,
  nowSeconds: number,
): Promise<{ entries: EntryRecord[]; validUntil: number }> {
  let validUntil = Infinity;
  const have = new Set(agent.selectors.map(formatSelector));
  const nodeEntries = (await store.listEntriesByParents([serverId(trustDomain)])).filter(
    (e) => live(e, nowSeconds) && e.selectors.length > 0 && selectorsSubset(e.selectors, have),
  );
  for (const e of nodeEntries) if (e.expiresAt !== null) validUntil = Math.min(validUntil, e.expiresAt);
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
      if (e.expiresAt !== null) validUntil = Math.min(validUntil, e.expiresAt);
      next.push(e.spiffeId);
    }
    frontier = next;
  }
  const entries = [...result.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { entries, validUntil };
}

function live(e: EntryRecord, now: number): boolean {
  return e.expiresAt === null || e.expiresAt > now;
}
