/**
 * A short-lived memory of store reads, for the lookups every node API call
 * repeats (the calling agent's record, the entries under a parent), so that
 * a busy CA does not queue a database round trip per call behind its audit
 * commits.
 *
 * Exact within this process: a write through the store forgets what it may
 * change before it is issued, and a read that was in flight while any write
 * started is not remembered (the store runs its statements in FIFO order, so
 * a read issued after a write began sees that write). `ttlMs` bounds how long
 * a value is served at all, which bounds the staleness only a writer outside
 * this process (an operator with the sqlite3 shell) could cause.
 */

export interface ReadCacheOptions {
  /** How long a value may be served, milliseconds; 0 turns the cache off. */
  ttlMs: number;
  /** Values kept at most; the oldest are forgotten first. */
  maxEntries: number;
  /** A monotonic clock in milliseconds (default performance.now). */
  nowMs?: () => number;
}

export class ReadCache<V> {
  readonly #values = new Map<string, { value: V; expiresAtMs: number }>();
  readonly #o: Required<ReadCacheOptions>;
  /** Writes started so far: a read caches its result only if this did not move while it ran. */
  #writes = 0;

  constructor(options: ReadCacheOptions) {
    this.#o = { nowMs: () => performance.now(), ...options };
  }

  /** Values for `keys`, loading the missing ones with one call of `load` (which must return a value for each key it is given). */
  async getMany(keys: readonly string[], load: (missing: string[]) => Promise<Map<string, V>>): Promise<Map<string, V>> {
    const now = this.#o.nowMs();
    const out = new Map<string, V>();
    const wanted = new Set<string>();
    for (const k of keys) {
      const hit = this.#values.get(k);
      if (hit && hit.expiresAtMs > now) out.set(k, hit.value);
      else wanted.add(k);
    }
    if (wanted.size === 0) return out;
    const missing = [...wanted];
    const writes = this.#writes;
    const loaded = await load(missing);
    const remember = this.#o.ttlMs > 0 && writes === this.#writes;
    for (const k of missing) {
      const v = loaded.get(k) as V;
      out.set(k, v);
      if (remember) this.#remember(k, v, now + this.#o.ttlMs);
    }
    return out;
  }

  /** The value for `key`, loaded with `load` when not known. */
  async get(key: string, load: () => Promise<V>): Promise<V> {
    return (await this.getMany([key], async () => new Map([[key, await load()]]))).get(key) as V;
  }

  /** Call before issuing a write that may change `keys` (all values when omitted). */
  forget(keys?: readonly string[]): void {
    this.#writes++;
    if (keys === undefined) this.#values.clear();
    else for (const k of keys) this.#values.delete(k);
  }

  /** Values currently held (for tests). */
  get size(): number {
    return this.#values.size;
  }

  #remember(key: string, value: V, expiresAtMs: number): void {
    this.#values.delete(key);
    if (this.#values.size >= this.#o.maxEntries) {
      const oldest = this.#values.keys().next();
      if (!oldest.done) this.#values.delete(oldest.value);
    }
    this.#values.set(key, { value, expiresAtMs });
  }
}

/** Freezes a record and the arrays and objects in it, so a caller cannot change what other callers are served. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value) && !Buffer.isBuffer(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
