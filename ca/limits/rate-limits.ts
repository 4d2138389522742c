/**
 * The CA's rate limits on the node API, their configuration keys and
 * defaults. Attestation is limited per source address; signing (agent
 * SVID renewal, SVID minting, SSH certificates) per agent and, more
 * loosely, per source address, so one misbehaving agent cannot starve the
 * others, nor can many agent identities on one host.
 */
import { z } from 'zod';
import type { RateLimit } from './token-bucket.js';

export interface RateLimits {
  /** Attestation calls per source IP address. */
  attestPerSource: RateLimit;
  /** Certificates signed per agent (a batch costs its size, capped at the burst). */
  signPerAgent: RateLimit;
  /** Certificates signed per source IP address, all agents there together. */
  signPerSource: RateLimit;
}

/**
 * Defaults: an agent may mint 5,000 SVIDs at once (a node with thousands of
 * entries starting up) and 500 a second after that; a host 4x that; a source
 * may attempt 50 attestations at once and 5 a second after that.
 */
export const DEFAULT_RATE_LIMITS: RateLimits = Object.freeze({
  attestPerSource: Object.freeze({ ratePerSecond: 5, burst: 50 }),
  signPerAgent: Object.freeze({ ratePerSecond: 500, burst: 5000 }),
  signPerSource: Object.freeze({ ratePerSecond: 2000, burst: 20_000 }),
});

const rate = z.number().nonnegative().finite();
const burst = z.number().int().positive();

/** Config file keys (camelCase), merged into the CA's raw config schema. */
export const rateLimitConfigFields = {
  attestRatePerSource: rate.optional(),
  attestBurstPerSource: burst.optional(),
  signRatePerAgent: rate.optional(),
  signBurstPerAgent: burst.optional(),
  signRatePerSource: rate.optional(),
  signBurstPerSource: burst.optional(),
};

type RawLimits = { [K in keyof typeof rateLimitConfigFields]?: number | undefined };

/** The limits from the raw config, defaults filled in. A rate of 0 turns a limit off. */
export function rateLimitsFrom(c: RawLimits): RateLimits {
  const d = DEFAULT_RATE_LIMITS;
  const one = (r: number | undefined, b: number | undefined, def: RateLimit): RateLimit => Object.freeze({ ratePerSecond: r ?? def.ratePerSecond, burst: b ?? def.burst });
  return Object.freeze({
    attestPerSource: one(c.attestRatePerSource, c.attestBurstPerSource, d.attestPerSource),
    signPerAgent: one(c.signRatePerAgent, c.signBurstPerAgent, d.signPerAgent),
    signPerSource: one(c.signRatePerSource, c.signBurstPerSource, d.signPerSource),
  });
}
