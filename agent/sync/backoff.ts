/**
 * Retry delays for talking to the CA: exponential with jitter and a cap,
 * but never so long that something we hold expires before the next
 * attempt.
 */

export interface BackoffPolicy {
  /** Delay after the first failure, ms. */
  readonly initialMs: number;
  /** Upper bound of any delay, ms. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ initialMs: 1000, maxMs: 30_000 });

/** Shortest retry delay even when a deadline is very close, ms (keeps a down CA from being hammered). */
export const MIN_RETRY_MS = 250;

/**
 * Delay before attempt number `failures + 1` after `failures` consecutive
 * failures (failures >= 1): equal jitter, half of the exponential step fixed
 * and half random, so agents that lost the CA together do not return together.
 */
export function backoffDelayMs(failures: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const n = Math.max(0, failures - 1);
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(n, 30));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * The backoff delay, shortened so that the next attempt comes no later
 * than half-way to `deadline` (typically the earliest expiry of an SVID we
 * still serve): repeated halving means several attempts before it lapses.
 */
export function retryDelayMs(
  failures: number,
  policy: BackoffPolicy,
  nowMs: number,
  deadlineMs: number | null,
  random: () => number = Math.random,
): number {
  const delay = backoffDelayMs(failures, policy, random);
  if (deadlineMs === null || deadlineMs <= nowMs) return delay;
  // Between a quarter and half of the time left: agents whose SVIDs expire together do not retry together.
  const halfway = (deadlineMs - nowMs) / 2;
  return Math.min(delay, Math.max(MIN_RETRY_MS, halfway / 2 + random() * (halfway / 2)));
}

/**
 * The wait between two successful polls: between 80% and 100% of the sync
 * interval, so that agents woken together (by one pushed change, or a CA
 * that came back) drift apart instead of polling in the same second forever,
 * and a change still reaches every agent within one interval.
 */
export function pollDelayMs(intervalMs: number, random: () => number = Math.random): number {
  return intervalMs * (0.8 + 0.2 * random());
}
