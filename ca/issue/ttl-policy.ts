/** Lifetime policy for X.509-SVIDs: one place decides what TTL is allowed. */
import { CaError } from '../errors.js';
import { formatDuration } from '../../spiffe/duration.js';

export interface TtlPolicy {
  defaultSeconds: number;
  minSeconds: number;
  maxSeconds: number;
}

/** Returns the TTL to use: `requested` (0 = the default), refused when out of bounds. */
export function resolveTtl(policy: TtlPolicy, requested: number, what = 'TTL'): number {
  if (!Number.isSafeInteger(requested) || requested < 0) {
    throw new CaError('INVALID_ARGUMENT', `${what} must be a non-negative whole number of seconds`);
  }
  const ttl = requested === 0 ? policy.defaultSeconds : requested;
  if (ttl < policy.minSeconds || ttl > policy.maxSeconds) {
    throw new CaError(
      'INVALID_ARGUMENT',
      `${what} ${formatDuration(ttl)} is outside the allowed range ${formatDuration(policy.minSeconds)} to ${formatDuration(policy.maxSeconds)}`,
    );
  }
  return ttl;
}
