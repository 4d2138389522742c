import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditGroupCommit } from '../ca/store/audit-group-commit.js';
import { ReadCache } from '../ca/store/read-cache.js';
import { openSqliteStore, type SqliteStore } from '../ca/store/sqlite.js';
import type { AgentRecord, AuditRecord, NewEntry } from '../ca/store/store.js';
import { MAX_ROWS_AFTER_HEAD, appendChainedAudit, appendChainedAuditAfter, readAuditChain } from '../ca/audit/sqlite-audit-chain.js';
import { GENESIS_HASH, auditRecordHash } from '../ca/audit/audit-hash.js';
import { verifyAuditChain } from '../ca/audit/verify-chain.js';

let dir: string;
let file: string;
const stores: SqliteStore[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-read-cache-'));
  file = path.join(dir, 'ca.sqlite');
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(readCacheMs?: number): Promise<SqliteStore> {
  const s = await openSqliteStore(file, readCacheMs === undefined ? {} : { readCacheMs });
  stores.push(s);
  return s;
}

const AGENT = 'spiffe://example.org/brevis/agent/a';
function agent(over: Partial<AgentRecord> = {}): AgentRecord {
  return { agentId: AGENT, attestationType: 'join_token', serial: '01', expiresAt: 2_000, selectors: [{ type: 'unix', value: 'uid:1' }], banned: false, createdAt: 1, lastSeenAt: 1, ...over };
}
function entry(id: string, parentId = AGENT): NewEntry {
  return { id, spiffeId: `spiffe://example.org/${id}`, parentId, selectors: [{ type: 'unix', value: 'uid:1' }], x509SvidTtl: 0, dnsNames: [], hint: '', admin: false, expiresAt: null };
}
function audit(i: number, over: Partial<AuditRecord> = {}): AuditRecord {
  return { timeMs: 1_000 + i, caller: AGENT, action: 'x509.mint', spiffeId: null, serial: String(i), notAfter: null, outcome: 'success', detail: null, ...over };
}

describe('ReadCache', () => {
  it('loads a value once and serves it until its time is up', async () => {
    let now = 0;
    const cache = new ReadCache<number>({ ttlMs: 100, maxEntries: 10, nowMs: () => now });
    let loads = 0;
    const load = async () => ++loads;
    expect(await cache.get('k', load)).toBe(1);
    expect(await cache.get('k', load)).toBe(1);
    now = 99;
    expect(await cache.get('k', load)).toBe(1);
    now = 100;
    expect(await cache.get('k', load)).toBe(2);
  });

  it('forgets a key at a write, and does not remember a read that overlapped a write', async () => {
    const cache = new ReadCache<string>({ ttlMs: 1_000, maxEntries: 10 });
    expect(await cache.get('k', async () => 'old')).toBe('old');
    cache.forget(['k']);
    let release!: () => void;
    const slow = cache.get('k', () => new Promise<string>((r) => (release = () => r('read before the write'))));
    await Promise.resolve();
    cache.forget(['k']); // a write starts while the read is in flight
    release();
    expect(await slow).toBe('read before the write');
    expect(await cache.get('k', async () => 'fresh')).toBe('fresh');
    expect(await cache.get('k', async () => 'not asked')).toBe('fresh');
  });

  it('loads only the missing keys of a batch, in one call', async () => {
    const cache = new ReadCache<string>({ ttlMs: 1_000, maxEntries: 10 });
    await cache.getMany(['a'], async () => new Map([['a', 'A']]));
    const asked: string[][] = [];
    const got = await cache.getMany(['a', 'b', 'b', 'c'], async (missing) => {
      asked.push(missing);
      return new Map(missing.map((k) => [k, k.toUpperCase()]));
    });
    expect(asked).toEqual([['b', 'c']]);
    expect([...got.entries()].sort()).toEqual([['a', 'A'], ['b', 'B'], ['c', 'C']]);
  });

  it('keeps at most maxEntries values, forgetting the oldest, and nothing with a zero TTL', async () => {
    const cache = new ReadCache<number>({ ttlMs: 1_000, maxEntries: 2 });
    for (const k of ['a', 'b', 'c']) await cache.get(k, async () => 1);
    expect(cache.size).toBe(2);
    const off = new ReadCache<number>({ ttlMs: 0, maxEntries: 2 });
    await off.get('a', async () => 1);
    expect(off.size).toBe(0);
  });
});

describe('SqliteStore served from its read cache', () => {
  it('refuses an evicted, banned or renewed agent at once (no stale record)', async () => {
    const store = await open();
    await store.upsertAgent(agent());
    expect((await store.getAgent(AGENT))?.serial).toBe('01');
    await store.updateAgentSvid(AGENT, '02', 3_000, 5);
    expect((await store.getAgent(AGENT))?.serial).toBe('02');
    await store.banAgent(AGENT);
    expect((await store.getAgent(AGENT))?.banned).toBe(true);
    await store.deleteAgent(AGENT);
    expect(await store.getAgent(AGENT)).toBeUndefined();
    await store.upsertAgent(agent({ serial: '03' }));
    expect((await store.getAgent(AGENT))?.serial).toBe('03');
    await store.touchAgent(AGENT, 77);
    expect((await store.getAgent(AGENT))?.lastSeenAt).toBe(77);
  });

  it('sees entries created and deleted at once', async () => {
    const store = await open();
    await store.createEntry(entry('e1'), 1);
    expect((await store.listEntriesByParents([AGENT])).map((e) => e.id)).toEqual(['e1']);
    await store.createEntry(entry('e0'), 1);
    expect((await store.listEntriesByParents([AGENT])).map((e) => e.id)).toEqual(['e0', 'e1']);
    await store.deleteEntry('e1');
    expect((await store.listEntriesByParents([AGENT])).map((e) => e.id)).toEqual(['e0']);
  });

  it('sorts the entries of several parents by id, once each', async () => {
    const store = await open();
    await store.createEntry(entry('b', 'p1'), 1);
    await store.createEntry(entry('c', 'p2'), 1);
    await store.createEntry(entry('a', 'p2'), 1);
    await store.listEntriesByParents(['p1']); // p1 remembered, p2 not yet
    expect((await store.listEntriesByParents(['p2', 'p1', 'p2', 'nobody'])).map((e) => e.id)).toEqual(['a', 'b', 'c']);
  });

  it('hands out records that callers cannot change for each other', async () => {
    const store = await open();
    await store.upsertAgent(agent());
    await store.createEntry(entry('e1'), 1);
    const a = (await store.getAgent(AGENT))!;
    a.selectors.push({ type: 'unix', value: 'uid:0' });
    a.banned = true;
    expect(await store.getAgent(AGENT)).toEqual(agent());
    const [e] = await store.listEntriesByParents([AGENT]);
    expect(() => (e!.dnsNames as string[]).push('evil.example')).toThrow(TypeError);
    expect((await store.listEntriesByParents([AGENT]))[0]!.dnsNames).toEqual([]);
  });

  it('serves what another connection changed once the cache time is up, and at once with the cache off', async () => {
    const a = await open(200);
    const off = await open(0);
    const other = await open();
    await a.upsertAgent(agent());
    await a.createEntry(entry('e1'), 1);
    expect((await a.getAgent(AGENT))?.banned).toBe(false);
    expect(await a.listEntriesByParents([AGENT])).toHaveLength(1);
    expect((await off.getAgent(AGENT))?.banned).toBe(false);
    await other.banAgent(AGENT);
    await other.createEntry(entry('e2'), 1);
    expect((await off.getAgent(AGENT))?.banned).toBe(true);
    expect(await off.listEntriesByParents([AGENT])).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 250));
    expect((await a.getAgent(AGENT))?.banned).toBe(true);
    expect(await a.listEntriesByParents([AGENT])).toHaveLength(2);
  });

  it('refuses cached reads once closed', async () => {
    const store = await open();
    await store.upsertAgent(agent());
    await store.getAgent(AGENT);
    await store.close();
    await expect(store.getAgent(AGENT)).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(store.listEntriesByParents([AGENT])).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('audit group commit', () => {
  it('writes concurrent appends in fewer transactions, in the order they were made', async () => {
    const store = await open();
    const sizes: number[] = [];
    const commit = new AuditGroupCommit(store.db, {
      append: (s, records) => {
        sizes.push(records.length);
        return appendChainedAudit(s, records);
      },
    });
    await Promise.all(Array.from({ length: 50 }, (_, i) => commit.append([audit(2 * i), audit(2 * i + 1)])));
    expect(sizes.length).toBeLessThan(50);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(100);
    expect((await store.listAudit()).map((r) => r.serial)).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
  });

  it('settles each append only once its records are committed, readable from another connection', async () => {
    const store = await open();
    const other = await open();
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        await store.appendAudit([audit(i)]);
        expect((await other.listAudit()).map((r) => r.serial)).toContain(String(i));
      }),
    );
  });

  it('fails only the append with a refused record when appends share a transaction', async () => {
    const store = await open();
    const results = await Promise.allSettled([
      store.appendAudit([audit(1)]),
      store.appendAudit([audit(2), audit(3)]),
      store.appendAudit([audit(4, { outcome: 'maybe' as AuditRecord['outcome'] })]),
      store.appendAudit([audit(5)]),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'CONFLICT' });
    expect((await store.listAudit()).map((r) => r.serial)).toEqual(['1', '2', '3', '5']);
  });

  it('writes a lone append after a known head as one statement, and a stale head falls back to a transaction', async () => {
    const store = await open();
    const other = await open();
    const calls: string[] = [];
    const commit = new AuditGroupCommit(store.db, {
      append: (s, records) => {
        calls.push(`append ${records.length}`);
        return appendChainedAudit(s, records);
      },
      appendAfter: async (s, records, head) => {
        try {
          const next = await appendChainedAuditAfter(s, records, head);
          calls.push(`after ${records.length}`);
          return next;
        } catch (e) {
          calls.push(`after refused: ${(e as Error).message}`);
          throw e;
        }
      },
      maxRowsAfter: MAX_ROWS_AFTER_HEAD,
    });
    await commit.append([audit(1)]);
    await commit.append([audit(2), audit(3)]);
    // Another connection appends: the head this writer remembers is stale now.
    await other.appendAudit([audit(4)]);
    await commit.append([audit(5)]);
    await commit.append([audit(6)]);
    // More records than one statement takes: the transaction, in chunks.
    await commit.append(Array.from({ length: MAX_ROWS_AFTER_HEAD + 1 }, (_, i) => audit(100 + i)));
    await commit.append([audit(7)]);
    expect(calls.slice(0, 4)).toEqual(['append 1', 'after 2', expect.stringMatching(/audit chain: a record must chain to the last record/), 'append 1']);
    expect(calls.slice(4)).toEqual(['after 1', `append ${MAX_ROWS_AFTER_HEAD + 1}`, 'after 1']);
    const serials = (await store.listAudit()).map((r) => r.serial);
    expect(serials).toEqual(['1', '2', '3', '4', '5', '6', ...Array.from({ length: MAX_ROWS_AFTER_HEAD + 1 }, (_, i) => String(100 + i)), '7']);
    const verdict = await verifyAuditChain((afterSeq, limit) => readAuditChain(store.db, { afterSeq, limit }));
    expect(verdict).toMatchObject({ intact: true, count: serials.length });
  });

  it('keeps the chain intact when this store and another connection append concurrently', async () => {
    const store = await open();
    const other = await open();
    await Promise.all(
      Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? other : store).appendAudit([audit(i)])),
    );
    const verdict = await verifyAuditChain((afterSeq, limit) => readAuditChain(store.db, { afterSeq, limit }));
    expect(verdict).toMatchObject({ intact: true, count: 30 });
    expect((await store.listAudit()).map((r) => r.serial).sort()).toEqual(Array.from({ length: 30 }, (_, i) => String(i)).sort());
  });

  it('has the database refuse a record that does not chain to the last one, whoever writes it', async () => {
    const store = await open();
    await store.appendAudit([audit(1)]);
    const [last] = await readAuditChain(store.db);
    const insert = (prevHash: string) => {
      const r = audit(2);
      return store.db.exclusive((s) =>
        s.run('INSERT INTO audit (seq, time_ms, caller, action, spiffe_id, serial, not_after, outcome, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', [
          2, r.timeMs, r.caller, r.action, r.spiffeId, r.serial, r.notAfter, r.outcome, r.detail, prevHash, auditRecordHash(2, r, prevHash),
        ]),
      );
    };
    await expect(insert(GENESIS_HASH)).rejects.toMatchObject({ code: 'CONFLICT', message: expect.stringMatching(/must chain to the last record/) });
    await expect(store.db.exclusive((s) => appendChainedAuditAfter(s, [audit(2)], { seq: 1, hash: GENESIS_HASH }))).rejects.toMatchObject({ code: 'CONFLICT' });
    expect((await store.listAudit()).map((r) => r.serial)).toEqual(['1']);
    await insert(last!.hash);
    expect((await store.listAudit()).map((r) => r.serial)).toEqual(['1', '2']);
  });

  it('finishes appends made before the store was closed, and refuses later ones', async () => {
    const store = await open();
    const before = Promise.all([store.appendAudit([audit(1)]), store.appendAudit([audit(2)])]);
    const closing = store.close();
    await before;
    await closing;
    await expect(store.appendAudit([audit(3)])).rejects.toMatchObject({ code: 'CLOSED' });
    const reopened = await open();
    expect((await reopened.listAudit()).map((r) => r.serial)).toEqual(['1', '2']);
  });
});
