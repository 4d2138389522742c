/**
 * The CA's retry hint: a call refused by a rate limit (RESOURCE_EXHAUSTED)
 * carries the trailing metadata `retry-after-ms`, how long until it would
 * pass. The agent waits at least that long before its next attempt, on top
 * of its own jittered backoff, so that a throttled agent does not keep
 * knocking.
 */
import type * as grpc from '@grpc/grpc-js';

/** The trailing metadata key (ca/limits/rate-limit-interceptor.ts sets it). */
export const RETRY_AFTER_MS = 'retry-after-ms';
/** Longest hint honoured: a bad or hostile value must not park the agent. */
export const MAX_RETRY_HINT_MS = 10 * 60_000;

/** The hint in `md`, in milliseconds, or undefined when there is none (or it is not a positive number). */
export function retryHintOf(md: grpc.Metadata | undefined): number | undefined {
  const v = Number(md?.get(RETRY_AFTER_MS)[0]);
  return Number.isFinite(v) && v > 0 ? Math.min(v, MAX_RETRY_HINT_MS) : undefined;
}

/** The delay to wait: the backoff delay, but never less than the CA asked for. */
export function honourRetryHint(delayMs: number, err: { retryAfterMs?: number | undefined }): number {
  return Math.max(delayMs, err.retryAfterMs ?? 0);
}
