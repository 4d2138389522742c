/**
 * The agent's in-memory view of what it may hand out: the entries it is
 * authorized for, the newest SVID of each, and the trust bundle. It is
 * the Workload API's WorkloadIdentityProvider.
 *
 * Invariants: workload private keys live only here (never on disk); an
 * expired SVID is never returned, and its expiry is announced through
 * onChange so open streams drop it; listeners fire only on a real change.
 */
import type { Entry } from '../../proto/gen/brevis/ca/v1/types.js';
import type { Clock } from '../../spiffe/clock.js';
import { formatSelector } from '../../spiffe/selector.js';
import { entryMatches } from '../attest/match.js';
import type { WorkloadIdentityProvider, WorkloadSvid } from '../workload-api/provider.js';
import type { CachedSvid } from './cached-svid.js';

export { CachedSvid, packSvids, type SvidParts } from './cached-svid.js';

interface Slot {
  entry: Entry;
  /** The entry's selectors as `type:value`. */
  selectors: string[];
  svid: CachedSvid | null;
  /** The entry changed in a way its SVID reflects (DNS names, TTL, revision): mint again. */
  stale: boolean;
}

export interface SvidCacheOptions {
  trustDomain: string;
  /** Initial root certificates, DER. */
  roots: readonly Buffer[];
  clock: Clock;
}

/** Longest single timer wait (setTimeout's limit is about 24.8 days). */
const MAX_SLEEP_MS = 2 ** 31 - 1;

export class SvidCache implements WorkloadIdentityProvider {
  readonly #trustDomain: string;
  readonly #clock: Clock;
  #roots: Buffer[];
  /** Sorted by entry id: the first match of a workload is its default SVID. */
  #slots: Slot[] = [];
  #byId = new Map<string, Slot>();
  #ready = false;
  readonly #listeners = new Set<() => void>();
  #expiryTimer: AbortController | null = null;
  #closed = false;

  constructor(options: SvidCacheOptions) {
    this.#trustDomain = options.trustDomain;
    this.#clock = options.clock;
    this.#roots = options.roots.map((r) => Buffer.from(r));
  }

  // --- WorkloadIdentityProvider ---

  isReady(): boolean {
    return this.#ready;
  }

  trustDomain(): string {
    return this.#trustDomain;
  }

  bundle(): Buffer[] {
    return this.#roots;
  }

  svidsFor(selectors: ReadonlySet<string>): WorkloadSvid[] {
    const now = this.#clock.now().getTime();
    const out: WorkloadSvid[] = [];
    for (const slot of this.#slots) {
      const svid = slot.svid;
      if (!svid || svid.notAfterMs <= now) continue;
      if (!entryMatches(slot.selectors, selectors)) continue;
      out.push({
        spiffeId: svid.spiffeId,
        entryId: slot.entry.id,
        chain: svid.chain as Buffer[],
        key: svid.key,
        hint: slot.entry.hint,
        notAfter: svid.notAfter,
      });
    }
    return out;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  // --- fed by the sync loop ---

  /** Replaces the roots; true (and listeners told) when they changed. */
  setBundle(roots: readonly Buffer[]): boolean {
    if (roots.length === this.#roots.length && roots.every((r, i) => r.equals(this.#roots[i]!))) return false;
    this.#roots = roots.map((r) => Buffer.from(r));
    this.#emit();
    return true;
  }

  /**
   * Replaces the set of entries. SVIDs of removed entries are dropped; an
   * entry whose SPIFFE ID changed loses its SVID at once; one whose
   * revision, DNS names or TTL changed keeps serving its SVID until a new
   * one is minted. Returns what changed; listeners are told if anything did.
   */
  setEntries(entries: readonly Entry[]): { added: number; removed: number; updated: number } {
    const next = new Map<string, Slot>();
    let added = 0;
    let updated = 0;
    for (const entry of entries) {
      if (next.has(entry.id)) continue;
      const old = this.#byId.get(entry.id);
      const selectors = entry.selectors.map(formatSelector);
      if (!old) {
        added++;
        next.set(entry.id, { entry, selectors, svid: null, stale: false });
        continue;
      }
      if (sameEntry(old.entry, entry)) {
        next.set(entry.id, old);
        continue;
      }
      updated++;
      const svid = old.svid && old.svid.spiffeId === entry.spiffeId ? old.svid : null;
      const stale = old.stale || svidFieldsChanged(old.entry, entry);
      next.set(entry.id, { entry, selectors, svid, stale: svid !== null && stale });
    }
    let removed = 0;
    for (const id of this.#byId.keys()) if (!next.has(id)) removed++;
    if (added + removed + updated === 0) return { added, removed, updated };
    this.#byId = next;
    this.#slots = [...next.values()].sort((a, b) => (a.entry.id < b.entry.id ? -1 : a.entry.id > b.entry.id ? 1 : 0));
    this.#armExpiry();
    this.#emit();
    return { added, removed, updated };
  }

  /**
   * Stores newly minted SVIDs (entry id -> SVID); ignores entries no longer
   * present. Listeners are told once. Returns how many were stored.
   */
  putSvids(minted: ReadonlyArray<{ entryId: string; svid: CachedSvid }>): number {
    let stored = 0;
    for (const { entryId, svid } of minted) {
      const slot = this.#byId.get(entryId);
      if (!slot || svid.spiffeId !== slot.entry.spiffeId) continue;
      slot.svid = svid;
      slot.stale = false;
      stored++;
    }
    if (stored > 0) {
      this.#armExpiry();
      this.#emit();
    }
    return stored;
  }

  /** Marks the first complete sync; listeners are told once. */
  markReady(): void {
    if (this.#ready) return;
    this.#ready = true;
    this.#emit();
  }

  /**
   * Marks for minting again every held SVID that `pred` selects (e.g. one
   * chained to a tainted authority); each keeps being served until its
   * replacement arrives. Returns how many were marked.
   */
  markStale(pred: (svid: CachedSvid) => boolean): number {
    let marked = 0;
    for (const s of this.#slots) {
      if (s.svid && !s.stale && pred(s.svid)) {
        s.stale = true;
        marked++;
      }
    }
    return marked;
  }

  /** Entries that need an SVID minted at `now`: none yet, stale, or past its rotation point. */
  due(now: Date): Entry[] {
    const t = now.getTime();
    return this.#slots.filter((s) => !s.svid || s.stale || s.svid.rotateAtMs <= t || s.svid.notAfterMs <= t).map((s) => s.entry);
  }

  /** The earliest rotation point of an SVID not yet due, or null. */
  nextRotation(now: Date): Date | null {
    let min: number | null = null;
    for (const s of this.#slots) {
      if (!s.svid || s.stale) continue;
      const r = s.svid.rotateAtMs;
      if (r > now.getTime() && (min === null || r < min)) min = r;
    }
    return min === null ? null : new Date(min);
  }

  /** The earliest notAfter of an SVID still served, or null. */
  earliestExpiry(now: Date): Date | null {
    let min: number | null = null;
    for (const s of this.#slots) {
      const e = s.svid?.notAfterMs;
      if (e !== undefined && e > now.getTime() && (min === null || e < min)) min = e;
    }
    return min === null ? null : new Date(min);
  }

  /** The current SVID of an entry (expired or not), or null. */
  svidOf(entryId: string): CachedSvid | null {
    return this.#byId.get(entryId)?.svid ?? null;
  }

  /** The entries held, sorted by id. */
  entries(): Entry[] {
    return this.#slots.map((s) => s.entry);
  }

  /** Stops the expiry timer. */
  close(): void {
    this.#closed = true;
    this.#expiryTimer?.abort();
    this.#expiryTimer = null;
  }

  /** Drops expired SVIDs now; listeners are told if any was. */
  sweep(): number {
    const now = this.#clock.now().getTime();
    let dropped = 0;
    for (const s of this.#slots) {
      if (s.svid && s.svid.notAfterMs <= now) {
        s.svid = null;
        s.stale = false;
        dropped++;
      }
    }
    this.#armExpiry();
    if (dropped > 0) this.#emit();
    return dropped;
  }

  /** Wakes up at the earliest expiry to drop that SVID and tell open streams. */
  #armExpiry(): void {
    this.#expiryTimer?.abort();
    this.#expiryTimer = null;
    if (this.#closed) return;
    const now = this.#clock.now();
    let next: number | null = null;
    for (const s of this.#slots) {
      const e = s.svid?.notAfterMs;
      if (e !== undefined && (next === null || e < next)) next = e;
    }
    if (next === null) return;
    const ac = new AbortController();
    this.#expiryTimer = ac;
    // +1 ms: an SVID counts as expired once now >= notAfter.
    const wait = Math.min(MAX_SLEEP_MS, Math.max(0, next - now.getTime() + 1));
    this.#clock.sleep(wait, ac.signal).then(
      () => {
        if (this.#expiryTimer === ac) this.sweep();
      },
      () => undefined,
    );
  }

  #emit(): void {
    for (const l of [...this.#listeners]) {
      try {
        l();
      } catch {
        // One listener's failure must not keep the others from hearing.
      }
    }
  }
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function svidFieldsChanged(a: Entry, b: Entry): boolean {
  return (
    a.revision !== b.revision ||
    a.spiffeId !== b.spiffeId ||
    a.x509SvidTtl !== b.x509SvidTtl ||
    !sameStrings([...a.dnsNames].sort(), [...b.dnsNames].sort())
  );
}

function sameEntry(a: Entry, b: Entry): boolean {
  return (
    !svidFieldsChanged(a, b) &&
    a.parentId === b.parentId &&
    a.hint === b.hint &&
    a.admin === b.admin &&
    a.expiresAt === b.expiresAt &&
    sameStrings(a.selectors.map(formatSelector), b.selectors.map(formatSelector))
  );
}
