/**
 * When to replace an SVID (the agent's own and every workload's): a pure
 * function of the certificate's validity and the rotation policy, so that
 * tests can reason about it with any clock.
 */
import type { RotationPolicy } from '../config/config.js';

export const DEFAULT_ROTATION: RotationPolicy = Object.freeze({ fraction: 0.5, jitter: 0.1 });

/**
 * The instant an SVID should be replaced: when its remaining life falls
 * below `policy.fraction` of its lifetime, with the time to that point
 * stretched or shrunk by `jitterUnit * policy.jitter` (jitterUnit in
 * [-1, 1], drawn once per SVID).
 *
 * The lifetime starts at `obtainedAt` when it is known and later than
 * notBefore: CAs backdate notBefore for clock skew (30 s by default here),
 * which for a one-minute SVID would otherwise put half-life at the moment
 * of issue. For an SVID read back from disk, obtainedAt is unknown and the
 * (earlier, hence safer) notBefore is used.
 */
export function rotationPoint(
  validity: { notBefore: Date; notAfter: Date; obtainedAt?: Date | undefined },
  policy: RotationPolicy,
  jitterUnit: number,
): Date {
  const end = validity.notAfter.getTime();
  let start = validity.notBefore.getTime();
  if (validity.obtainedAt) start = Math.max(start, Math.min(validity.obtainedAt.getTime(), end));
  const unit = Math.max(-1, Math.min(1, jitterUnit));
  const untilRotation = (end - start) * (1 - policy.fraction) * (1 + unit * policy.jitter);
  return new Date(Math.min(end, start + untilRotation));
}

/** A uniform draw in [-1, 1] for rotationPoint. */
export function randomJitterUnit(random: () => number = Math.random): number {
  return random() * 2 - 1;
}
