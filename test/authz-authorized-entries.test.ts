/**
 * The entries an agent may mint for, and the answers kept per agent
 * (ca/authz/authorized-entries.ts), on a real SQLite store: a write through
 * the store is seen at once, a write through another connection within the
 * store's read-cache window, concurrent callers share one computation, and
 * a store without an entries revision is asked every time.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { authorizedEntries, authorizedEntriesById, serverId } from '../ca/authz/authorized-entries.js';
import { openSqliteStore, type SqliteStore } from '../ca/store/sqlite.js';
import type { NewEntry, Selector, Store } from '../ca/store/store.js';

const TD = 'example.org';
const AGENT = `spiffe://${TD}/brevis/agent/a`;
const NODE_SET = `spiffe://${TD}/node-set/gpu`;

let dir: string;
let file: string;
const stores: SqliteStore[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-authz-'));
  file = path.join(dir, 'ca.sqlite');
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(readCacheMs: number): Promise<SqliteStore> {
  const s = await openSqliteStore(file, { readCacheMs });
  stores.push(s);
  return s;
}

function entry(id: string, over: Partial<NewEntry> = {}): NewEntry {
  return { id, spiffeId: `spiffe://${TD}/${id}`, parentId: AGENT, selectors: [{ type: 'unix', value: 'uid:1' }], x509SvidTtl: 0, dnsNames: [], hint: '', admin: false, expiresAt: null, ...over };
}

const agent = (selectors: Selector[] = [{ type: 'agent', value: 'pool:a' }]) => ({ agentId: AGENT, selectors });

/** The real store, with its reads counted (and optionally held back). */
function counted(store: Store, withRevision = true) {
  const c = {
    reads: 0,
    hold: null as Promise<void> | null,
    listEntriesByParents: async (parents: string[]) => {
      c.reads++;
      if (c.hold) await c.hold;
      return store.listEntriesByParents(parents);
    },
    ...(withRevision ? { entriesRevision: () => store.entriesRevision!() } : {}),
  };
  return c;
}

const ids = (entries: readonly { id: string }[]) => entries.map((e) => e.id);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('authorized entries', () => {
  it('sees an entry created or deleted through the store at once', async () => {
    const store = await open(60_000);
    const s = counted(store);
    await store.createEntry(entry('b'), 1);
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['b']);
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['b']);
    await store.createEntry(entry('a'), 1);
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['a', 'b']);
    expect(await store.deleteEntry('b')).toBe(true);
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['a']);
    expect([...(await authorizedEntriesById(s, TD, agent(), 10)).keys()]).toEqual(['a']);
  });

  it('answers again when the agent presents other selectors', async () => {
    const store = await open(60_000);
    const s = counted(store);
    await store.createEntry(entry('gpu-set', { spiffeId: NODE_SET, parentId: serverId(TD), selectors: [{ type: 'agent', value: 'pool:gpu' }] }), 1);
    await store.createEntry(entry('trainer', { parentId: NODE_SET }), 1);
    await store.createEntry(entry('own'), 1);
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['own']);
    const gpu = agent([{ type: 'agent', value: 'pool:a' }, { type: 'agent', value: 'pool:gpu' }]);
    expect(ids(await authorizedEntries(s, TD, gpu, 10))).toEqual(['own', 'trainer']);
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['own']);
  });

  it('ends a kept answer when an entry in it expires', async () => {
    const store = await open(60_000);
    const s = counted(store);
    await store.createEntry(entry('short', { expiresAt: 100 }), 1);
    await store.createEntry(entry('long'), 1);
    expect(ids(await authorizedEntries(s, TD, agent(), 99))).toEqual(['long', 'short']);
    expect(ids(await authorizedEntries(s, TD, agent(), 100))).toEqual(['long']);
  });

  it('sees a write through another connection once the read-cache window has passed', async () => {
    const maxAgeMs = 150;
    const store = await open(maxAgeMs);
    const other = await open(maxAgeMs);
    const s = counted(store);
    await store.createEntry(entry('a'), 1);
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['a']);
    await other.createEntry(entry('b'), 1);
    // The store's own read cache and the kept answer are each at most maxAgeMs old.
    await sleep(2 * maxAgeMs + 50);
    await authorizedEntries(s, TD, agent(), 10); // may be the kept answer, renewing in the background
    await sleep(2 * maxAgeMs + 50);
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['a', 'b']);
  });

  it('has concurrent callers share one computation, and renews a kept answer in the background', async () => {
    const maxAgeMs = 400;
    const store = await open(maxAgeMs);
    await store.createEntry(entry('a'), 1);
    await store.createEntry(entry('b', { parentId: `spiffe://${TD}/a` }), 1);

    const once = counted(store);
    await authorizedEntries(once, TD, agent(), 10);
    const readsPerAnswer = once.reads;
    expect(readsPerAnswer).toBeGreaterThan(1);

    const s = counted(store);
    let release!: () => void;
    s.hold = new Promise((r) => (release = r));
    const callers = Array.from({ length: 20 }, () => authorizedEntries(s, TD, agent(), 10));
    await sleep(20);
    release();
    s.hold = null;
    const answers = await Promise.all(callers);
    for (const a of answers) expect(ids(a)).toEqual(['a', 'b']);
    expect(s.reads).toBe(readsPerAnswer);

    // Young: served as kept, nothing read.
    await authorizedEntries(s, TD, agent(), 10);
    expect(s.reads).toBe(readsPerAnswer);
    // Past half its age: still served at once, and renewed behind the caller's back.
    await sleep(maxAgeMs / 2 + 20);
    let held = true;
    s.hold = new Promise((r) => setTimeout(() => ((held = false), r()), 100));
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['a', 'b']);
    expect(held).toBe(true);
    await vi.waitFor(() => expect(s.reads).toBe(2 * readsPerAnswer), { timeout: 5_000 });
    s.hold = null;
    await sleep(50);
    expect(s.reads).toBe(2 * readsPerAnswer);
  });

  it('asks a store without an entries revision every time', async () => {
    const store = await open(60_000);
    const s = counted(store, false);
    await store.createEntry(entry('a'), 1);
    await authorizedEntries(s, TD, agent(), 10);
    const first = s.reads;
    await authorizedEntries(s, TD, agent(), 10);
    expect(s.reads).toBe(2 * first);
  });

  it('answers anew after an entry is written while an answer is computed', async () => {
    const store = await open(60_000);
    const s = counted(store);
    await store.createEntry(entry('a'), 1);
    let release!: () => void;
    s.hold = new Promise((r) => (release = r));
    const racing = authorizedEntries(s, TD, agent(), 10);
    await sleep(10);
    await store.createEntry(entry('b'), 1);
    release();
    s.hold = null;
    await racing;
    expect(ids(await authorizedEntries(s, TD, agent(), 10))).toEqual(['a', 'b']);
  });
});
