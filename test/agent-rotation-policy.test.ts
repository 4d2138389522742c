import { describe, expect, it } from 'vitest';
import { rotationPoint } from '../agent/svid/rotation.js';
import { backoffDelayMs, pollDelayMs, retryDelayMs, MIN_RETRY_MS } from '../agent/sync/backoff.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const policy = { fraction: 0.5, jitter: 0.1 };

describe('rotation point', () => {
  it('is half of the lifetime counted from when the SVID was obtained, not from the backdated notBefore', () => {
    const v = { notBefore: new Date(T0 - 30_000), notAfter: new Date(T0 + 60_000), obtainedAt: new Date(T0) };
    expect(rotationPoint(v, policy, 0).getTime()).toBe(T0 + 30_000);
  });

  it('falls back to notBefore when the SVID came from disk', () => {
    const v = { notBefore: new Date(T0), notAfter: new Date(T0 + 3_600_000) };
    expect(rotationPoint(v, policy, 0).getTime()).toBe(T0 + 1_800_000);
  });

  it('moves by at most ±10% of the time to the rotation point', () => {
    const v = { notBefore: new Date(T0), notAfter: new Date(T0 + 100_000) };
    expect(rotationPoint(v, policy, -1).getTime()).toBe(T0 + 45_000);
    expect(rotationPoint(v, policy, 1).getTime()).toBe(T0 + 55_000);
    expect(rotationPoint(v, policy, 7).getTime()).toBe(T0 + 55_000);
  });

  it('honours another fraction: 0.25 renews with a quarter of the life left', () => {
    const v = { notBefore: new Date(T0), notAfter: new Date(T0 + 100_000) };
    expect(rotationPoint(v, { fraction: 0.25, jitter: 0 }, 0).getTime()).toBe(T0 + 75_000);
  });
});

describe('retry delays', () => {
  const p = { initialMs: 1000, maxMs: 30_000 };

  it('double from the initial delay up to the cap, with half of each step random', () => {
    expect(backoffDelayMs(1, p, () => 0)).toBe(500);
    expect(backoffDelayMs(1, p, () => 1)).toBe(1000);
    expect(backoffDelayMs(3, p, () => 1)).toBe(4000);
    expect(backoffDelayMs(20, p, () => 1)).toBe(30_000);
    expect(backoffDelayMs(20, p, () => 0)).toBe(15_000);
  });

  it('never wait past half-way to the earliest expiry of what is still served', () => {
    const now = T0;
    expect(retryDelayMs(20, p, now, now + 10_000, () => 1)).toBe(5000);
    expect(retryDelayMs(20, p, now, now + 100, () => 1)).toBe(MIN_RETRY_MS);
    expect(retryDelayMs(20, p, now, null, () => 1)).toBe(30_000);
    expect(retryDelayMs(2, p, now, now + 3_600_000, () => 1)).toBe(2000);
    // Near the deadline, between a quarter and half of the time left.
    expect(retryDelayMs(20, p, now, now + 10_000, () => 0)).toBe(2500);
    expect(retryDelayMs(20, p, now, now + 10_000, () => 0.5)).toBe(3750);
  });

  it('poll between 80% and 100% of the sync interval, never later', () => {
    expect(pollDelayMs(5000, () => 0)).toBe(4000);
    expect(pollDelayMs(5000, () => 1)).toBe(5000);
    expect(pollDelayMs(5000, () => 0.5)).toBe(4500);
    // Agents woken together drift apart: 100 random delays are not all in one 100 ms slot.
    const slots = new Set(Array.from({ length: 100 }, () => Math.floor(pollDelayMs(5000) / 100)));
    expect(slots.size).toBeGreaterThan(3);
  });
});
