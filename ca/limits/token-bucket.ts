/**
 * Token buckets: `burst` tokens at most, refilled at `ratePerSecond`. A
 * request costing n tokens passes when n are there; otherwise it is told
 * how long until they will be. Time comes in as milliseconds, so the
 * arithmetic is pure and testable.
 */

export interface RateLimit {
  /** Tokens added per second; 0 turns the limit off. */
  ratePerSecond: number;
  /** Bucket size: the largest burst. */
  burst: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterMs: number };

export class TokenBucket {
  #tokens: number;
  #lastMs: number;

  constructor(
    readonly limit: RateLimit,
    nowMs: number,
  ) {
    this.#tokens = limit.burst;
    this.#lastMs = nowMs;
  }

  /** Tokens available at `nowMs`. */
  available(nowMs: number): number {
    this.#refill(nowMs);
    return this.#tokens;
  }

  /** True when the bucket is full at `nowMs` (it can be forgotten: a new one is the same). */
  full(nowMs: number): boolean {
    return this.available(nowMs) >= this.limit.burst;
  }

  /** Whether `cost` tokens are there, and if not, how long until they are. Takes nothing. */
  check(cost: number, nowMs: number): TakeResult {
    this.#refill(nowMs);
    if (this.limit.ratePerSecond === 0 || this.#tokens >= cost) return { ok: true };
    return { ok: false, retryAfterMs: Math.ceil(((cost - this.#tokens) / this.limit.ratePerSecond) * 1000) };
  }

  /** Takes `cost` tokens (after a successful check). */
  take(cost: number, nowMs: number): void {
    this.#refill(nowMs);
    if (this.limit.ratePerSecond !== 0) this.#tokens -= cost;
  }

  #refill(nowMs: number): void {
    const elapsed = Math.max(0, nowMs - this.#lastMs);
    this.#lastMs = Math.max(this.#lastMs, nowMs);
    this.#tokens = Math.min(this.limit.burst, this.#tokens + (elapsed / 1000) * this.limit.ratePerSecond);
  }
}

/**
 * One bucket per key (an agent ID, a source address), created on first
 * use. Buckets that are full again are forgotten from time to time, and
 * the number kept is bounded, so that many keys cannot grow memory
 * without bound: when the map is full, the oldest bucket makes room (a
 * forgotten bucket comes back full, which only ever errs towards allowing).
 */
export class KeyedBuckets {
  readonly #buckets = new Map<string, TokenBucket>();
  #ops = 0;

  constructor(
    readonly limit: RateLimit,
    private readonly maxKeys = 100_000,
  ) {}

  get size(): number {
    return this.#buckets.size;
  }

  bucket(key: string, nowMs: number): TokenBucket {
    if (++this.#ops % 1024 === 0) this.#sweep(nowMs);
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
      b = new TokenBucket(this.limit, nowMs);
      this.#buckets.set(key, b);
    }
    return b;
  }

  #sweep(nowMs: number): void {
    for (const [k, b] of this.#buckets) if (b.full(nowMs)) this.#buckets.delete(k);
  }
}
