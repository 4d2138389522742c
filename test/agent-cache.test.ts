import { describe, expect, it } from 'vitest';
import { SvidCache, packSvids, type CachedSvid } from '../agent/cache/svid-cache.js';
import type { Entry } from '../proto/gen/brevis/ca/v1/types.js';
import { ManualClock } from './support/manual-clock.js';
import { sel } from './support/agent-harness.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');

function entry(id: string, over: Partial<Entry> & { sels?: string[] } = {}): Entry {
  const { sels, ...rest } = over;
  return {
    id,
    spiffeId: `spiffe://example.org/${id}`,
    parentId: 'spiffe://example.org/brevis/agent/a',
    selectors: (sels ?? ['unix:uid:1000']).map(sel),
    x509SvidTtl: 60,
    dnsNames: [],
    hint: '',
    admin: false,
    expiresAt: 0,
    revision: 1,
    createdAt: 0,
    ...rest,
  };
}

/** A stand-in SVID: the cache never parses the bytes, only holds and serves them. */
function svid(e: Entry, mintedAt: number, ttlMs = 60_000, tag = 'x'): CachedSvid {
  return packSvids([
    {
      spiffeId: e.spiffeId,
      chain: [Buffer.from(`leaf-${e.id}-${tag}`), Buffer.from('intermediate')],
      key: Buffer.from(`key-${e.id}-${tag}`),
      serial: `${e.id}${tag}`,
      notBefore: new Date(mintedAt - 30_000),
      notAfter: new Date(mintedAt + ttlMs),
      rotateAt: new Date(mintedAt + ttlMs / 2),
    },
  ])[0]!;
}

function setup(): { clock: ManualClock; cache: SvidCache; changes: () => number } {
  const clock = new ManualClock(T0);
  const cache = new SvidCache({ trustDomain: 'example.org', roots: [Buffer.from('root-1')], clock });
  let n = 0;
  cache.onChange(() => n++);
  return { clock, cache, changes: () => n };
}

describe('SvidCache', () => {
  it('serves the SVIDs of every entry whose selectors are all among the workload selectors, ordered by entry id', () => {
    const { cache } = setup();
    const a = entry('a', { sels: ['unix:uid:1000', 'unix:gid:10'] });
    const b = entry('b', { sels: ['unix:uid:1000'], hint: 'internal' });
    const c = entry('c', { sels: ['unix:uid:2000'] });
    cache.setEntries([c, b, a]);
    cache.putSvids([a, b, c].map((e) => ({ entryId: e.id, svid: svid(e, T0) })));

    expect(cache.svidsFor(new Set(['unix:uid:1000'])).map((s) => s.entryId)).toEqual(['b']);
    const both = cache.svidsFor(new Set(['unix:uid:1000', 'unix:gid:10', 'unix:path:/bin/x']));
    expect(both.map((s) => s.entryId)).toEqual(['a', 'b']);
    expect(both[1]).toMatchObject({ spiffeId: 'spiffe://example.org/b', hint: 'internal', key: Buffer.from('key-b-x') });
    expect(both[1]!.chain.map(String)).toEqual(['leaf-b-x', 'intermediate']);
    expect(cache.svidsFor(new Set(['unix:uid:3000']))).toEqual([]);
    expect(cache.svidsFor(new Set())).toEqual([]);
  });

  it('never matches an entry without selectors', () => {
    const { cache } = setup();
    const open = entry('open', { sels: [] });
    cache.setEntries([open]);
    cache.putSvids([{ entryId: 'open', svid: svid(open, T0) }]);
    expect(cache.svidsFor(new Set(['unix:uid:1000']))).toEqual([]);
  });

  it('never returns an expired SVID and announces its expiry to listeners', async () => {
    const { clock, cache, changes } = setup();
    const a = entry('a');
    cache.setEntries([a]);
    cache.putSvids([{ entryId: 'a', svid: svid(a, T0, 60_000) }]);
    const before = changes();
    clock.advance(59_999);
    expect(cache.svidsFor(new Set(['unix:uid:1000']))).toHaveLength(1);
    expect(changes()).toBe(before);
    clock.advance(1);
    // Filtered by the clock even before the expiry timer has run.
    expect(cache.svidsFor(new Set(['unix:uid:1000']))).toEqual([]);
    clock.advance(1);
    await new Promise((r) => setImmediate(r));
    expect(changes()).toBe(before + 1);
    expect(cache.svidOf('a')).toBeNull();
    expect(cache.due(clock.now()).map((e) => e.id)).toEqual(['a']);
    cache.close();
  });

  it('tells listeners only about real changes', () => {
    const { cache, changes } = setup();
    const a = entry('a');
    cache.setEntries([a]);
    expect(changes()).toBe(1);
    cache.setEntries([{ ...a, selectors: [...a.selectors] }]);
    expect(changes()).toBe(1);
    expect(cache.setBundle([Buffer.from('root-1')])).toBe(false);
    expect(changes()).toBe(1);
    expect(cache.setBundle([Buffer.from('root-1'), Buffer.from('root-2')])).toBe(true);
    expect(changes()).toBe(2);
    expect(cache.bundle().map(String)).toEqual(['root-1', 'root-2']);
    expect(cache.putSvids([{ entryId: 'gone', svid: svid(entry('gone'), T0) }])).toBe(0);
    expect(changes()).toBe(2);
    cache.putSvids([{ entryId: 'a', svid: svid(a, T0) }]);
    expect(changes()).toBe(3);
    cache.markReady();
    cache.markReady();
    expect(changes()).toBe(4);
    expect(cache.isReady()).toBe(true);
    cache.close();
  });

  it('reports readiness only after markReady', () => {
    const { cache } = setup();
    expect(cache.isReady()).toBe(false);
    cache.setEntries([entry('a')]);
    expect(cache.isReady()).toBe(false);
    cache.markReady();
    expect(cache.isReady()).toBe(true);
  });

  it('asks for a new SVID when none exists, when the entry changed what the SVID carries, and at the rotation point', () => {
    const { clock, cache } = setup();
    const a = entry('a');
    const b = entry('b');
    cache.setEntries([a, b]);
    expect(cache.due(clock.now()).map((e) => e.id)).toEqual(['a', 'b']);
    cache.putSvids([a, b].map((e) => ({ entryId: e.id, svid: svid(e, T0) })));
    expect(cache.due(clock.now())).toEqual([]);
    expect(cache.nextRotation(clock.now())?.getTime()).toBe(T0 + 30_000);

    // A hint change is served at once and needs no new certificate.
    cache.setEntries([{ ...a, hint: 'h', revision: 1 }, b]);
    expect(cache.due(clock.now())).toEqual([]);
    expect(cache.svidsFor(new Set(['unix:uid:1000']))[0]!.hint).toBe('h');

    // New DNS names: the old SVID is still served until the new one arrives.
    cache.setEntries([{ ...a, hint: 'h', dnsNames: ['a.local'], revision: 2 }, b]);
    expect(cache.due(clock.now()).map((e) => e.id)).toEqual(['a']);
    expect(cache.svidsFor(new Set(['unix:uid:1000'])).map((s) => s.entryId)).toEqual(['a', 'b']);

    clock.advance(30_000);
    expect(cache.due(clock.now()).map((e) => e.id)).toEqual(['a', 'b']);
    cache.close();
  });

  it('drops the SVID at once when the entry gets another SPIFFE ID, and the SVIDs of removed entries', () => {
    const { cache } = setup();
    const a = entry('a');
    const b = entry('b');
    cache.setEntries([a, b]);
    cache.putSvids([a, b].map((e) => ({ entryId: e.id, svid: svid(e, T0) })));
    cache.setEntries([{ ...a, spiffeId: 'spiffe://example.org/renamed', revision: 2 }, b]);
    expect(cache.svidOf('a')).toBeNull();
    expect(cache.svidsFor(new Set(['unix:uid:1000'])).map((s) => s.spiffeId)).toEqual(['spiffe://example.org/b']);
    // A late answer minted for the old ID is not accepted.
    expect(cache.putSvids([{ entryId: 'a', svid: svid(a, T0, 60_000, 'late') }])).toBe(0);

    const r = cache.setEntries([{ ...a, spiffeId: 'spiffe://example.org/renamed', revision: 2 }]);
    expect(r).toEqual({ added: 0, removed: 1, updated: 0 });
    expect(cache.svidOf('b')).toBeNull();
    expect(cache.svidsFor(new Set(['unix:uid:1000']))).toEqual([]);
    cache.close();
  });

  it('replaces a rotated SVID and reports the earliest expiry of what it serves', () => {
    const { clock, cache } = setup();
    const a = entry('a');
    cache.setEntries([a]);
    cache.putSvids([{ entryId: 'a', svid: svid(a, T0, 60_000, 'one') }]);
    expect(cache.earliestExpiry(clock.now())?.getTime()).toBe(T0 + 60_000);
    clock.advance(31_000);
    cache.putSvids([{ entryId: 'a', svid: svid(a, clock.now().getTime(), 60_000, 'two') }]);
    expect(cache.svidsFor(new Set(['unix:uid:1000']))[0]!.key.toString()).toBe('key-a-two');
    expect(cache.earliestExpiry(clock.now())?.getTime()).toBe(T0 + 91_000);
    cache.close();
  });
});
