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
 * the first entry in it expires. Callers that arrive while an answer is
 * computed share that computation, and an answer past half its age is
 * renewed in the background, so a busy CA never has every call of a second
 * queue behind the same reads.
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

/** Per store: the answers kept, by agent id, and the computations running. */
const kept = new WeakMap<object, { answers: Map<string, Answer>; inflight: Map<string, { revision: number; selectorsKey: string; promise: Promise<Answer> }> }>();

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
  const rev = store.entriesRevision?.();
  if (!rev || rev.maxAgeMs <= 0) return answer(await compute(store, trustDomain, agent, nowSeconds), '', 0, performance.now());
  const selectorsKey = agent.selectors.map(formatSelector).sort().join('\n');
  let state = kept.get(store);
  if (!state) kept.set(store, (state = { answers: new Map(), inflight: new Map() }));
  const st = state;
  const fits = (a: { revision: number; selectorsKey: string }) => a.revision === rev.revision && a.selectorsKey === selectorsKey;
  /** One computation per agent at a time: callers that arrive while it runs share it. */
  const refresh = (): Promise<Answer> => {
    const running = st.inflight.get(agent.agentId);
    if (running && fits(running)) return running.promise;
    const computedAtMs = performance.now();
    const promise = compute(store, trustDomain, agent, nowSeconds)
      .then((r) => {
        const a = answer(r, selectorsKey, rev.revision, computedAtMs);
        // Kept only when no entry was written while it was computed.
        if (store.entriesRevision?.().revision === rev.revision) {
          st.answers.delete(agent.agentId);
          if (st.answers.size >= MAX_AGENTS) st.answers.delete(st.answers.keys().next().value!);
          st.answers.set(agent.agentId, a);
        }
        return a;
      })
      .finally(() => {
        if (st.inflight.get(agent.agentId)?.promise === promise) st.inflight.delete(agent.agentId);
      });
    st.inflight.set(agent.agentId, { revision: rev.revision, selectorsKey, promise });
    return promise;
  };
  const known = st.answers.get(agent.agentId);
  if (known && fits(known) && nowSeconds < known.validUntil) {
    const age = performance.now() - known.computedAtMs;
    if (age < rev.maxAgeMs) {
      // Renewed ahead of its end, in the background, so that no call waits for it.
      if (age >= rev.maxAgeMs / 2) refresh().catch(() => undefined);
      return known;
    }
  }
  return refresh();
}

function answer(r: { entries: EntryRecord[]; validUntil: number }, selectorsKey: string, revision: number, computedAtMs: number): Answer {
  return { selectorsKey, revision, computedAtMs, validUntil: r.validUntil, entries: r.entries, byId: new Map(r.entries.map((e) => [e.id, e])) };
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
