/**
 * A Clock whose time moves only when a test says so. Sleeps resolve when
 * advance() passes their deadline; waitForSleepers() tells the test that
 * the code under test is now waiting (so time can be moved without races).
 */
import type { Clock } from '../../spiffe/clock.js';

interface Sleeper {
  at: number;
  resolve: () => void;
}

export class ManualClock implements Clock {
  #now: number;
  #sleepers: Sleeper[] = [];

  constructor(start: Date | number = Date.now()) {
    this.#now = typeof start === 'number' ? start : start.getTime();
  }

  now(): Date {
    return new Date(this.#now);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const s: Sleeper = {
        at: this.#now + Math.max(0, ms),
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#sleepers = this.#sleepers.filter((x) => x !== s);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#sleepers.push(s);
      if (ms <= 0) this.#fire();
    });
  }

  /** Moves time forward by `ms` and wakes every sleeper whose deadline has come. */
  advance(ms: number): void {
    this.#now += ms;
    this.#fire();
  }

  /** Moves time to `at` (never backwards). */
  set(at: Date): void {
    this.#now = Math.max(this.#now, at.getTime());
    this.#fire();
  }

  /** Number of pending sleeps. */
  sleepers(): number {
    return this.#sleepers.length;
  }

  /** The earliest pending deadline, or null. */
  nextDeadline(): Date | null {
    if (this.#sleepers.length === 0) return null;
    return new Date(Math.min(...this.#sleepers.map((s) => s.at)));
  }

  /** Resolves once at least `n` sleeps are pending (polls the event loop). */
  async waitForSleepers(n = 1, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#sleepers.length < n) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} pending sleep(s); ${this.#sleepers.length} pending`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  #fire(): void {
    const due = this.#sleepers.filter((s) => s.at <= this.#now).sort((a, b) => a.at - b.at);
    this.#sleepers = this.#sleepers.filter((s) => s.at > this.#now);
    for (const s of due) s.resolve();
  }
}
