/**
 * Per-minute counts of issuances (by kind) and errors over the last hour,
 * kept in memory for the dashboard's rate chart. A fixed ring of buckets:
 * constant memory, and a bucket is reused once its minute is an hour old.
 */
import type { Clock } from '../../spiffe/clock.js';

export const ISSUANCE_KINDS = ['x509', 'ssh_user', 'ssh_host'] as const;
export type IssuanceKind = (typeof ISSUANCE_KINDS)[number];

/** One minute of activity. */
export interface MinuteCounts {
  /** Start of the minute, milliseconds since the epoch. */
  readonly startMs: number;
  readonly issued: Readonly<Record<IssuanceKind, number>>;
  /** Failed calls and refused items (any non-OK gRPC status). */
  readonly errors: number;
}

interface Bucket {
  minute: number;
  issued: Record<IssuanceKind, number>;
  errors: number;
}

const MINUTE_MS = 60_000;

export class ActivityHistory {
  readonly #clock: Clock;
  readonly #buckets: Bucket[];

  /** `minutes`: how far back the history reaches (default 60). */
  constructor(clock: Clock, readonly minutes = 60) {
    this.#clock = clock;
    this.#buckets = Array.from({ length: minutes }, () => ({ minute: -1, issued: { x509: 0, ssh_user: 0, ssh_host: 0 }, errors: 0 }));
  }

  recordIssued(kind: IssuanceKind, n = 1): void {
    this.#current().issued[kind] += n;
  }

  recordErrors(n = 1): void {
    this.#current().errors += n;
  }

  /** The last `minutes` minutes, oldest first, the current (partial) minute last; empty minutes are zeros. */
  series(): MinuteCounts[] {
    const now = Math.floor(this.#clock.now().getTime() / MINUTE_MS);
    const out: MinuteCounts[] = [];
    for (let m = now - this.minutes + 1; m <= now; m++) {
      const b = this.#buckets[this.#slot(m)]!;
      out.push(
        b.minute === m
          ? { startMs: m * MINUTE_MS, issued: { ...b.issued }, errors: b.errors }
          : { startMs: m * MINUTE_MS, issued: { x509: 0, ssh_user: 0, ssh_host: 0 }, errors: 0 },
      );
    }
    return out;
  }

  #slot(minute: number): number {
    return ((minute % this.minutes) + this.minutes) % this.minutes;
  }

  #current(): Bucket {
    const minute = Math.floor(this.#clock.now().getTime() / MINUTE_MS);
    const b = this.#buckets[this.#slot(minute)]!;
    if (b.minute !== minute) {
      b.minute = minute;
      b.issued = { x509: 0, ssh_user: 0, ssh_host: 0 };
      b.errors = 0;
    }
    return b;
  }
}
