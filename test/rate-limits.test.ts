/**
 * Rate limits on the node API: token buckets per source address
 * (attestation) and per agent and source (signing), answered with
 * ResourceExhausted and a `retry-after-ms` hint that the agent honours; a
 * misbehaving agent cannot starve another.
 */
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent } from '../agent/agent.js';
import { fromGrpcError } from '../agent/node/errors.js';
import { honourRetryHint, retryHintOf } from '../agent/sync/retry-hint.js';
import { buildCaConfig } from '../ca/config/config.js';
import { DEFAULT_RATE_LIMITS } from '../ca/limits/rate-limits.js';
import { KeyedBuckets, TokenBucket } from '../ca/limits/token-bucket.js';
import { AttestJoinTokenRequest, BatchMintX509SVIDRequest } from '../proto/gen/brevis/ca/v1/node.js';
import { agentConfig, createEntry, createJoinToken, tempDir, waitFor } from './support/agent-harness.js';
import { attestAgent, newKey, nodeClient, startTestCa, TD, type TestAgent, type TestCa } from './support/ca-harness.js';
import { rawUnary, statusName } from './support/raw-grpc.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function ca(overrides: Record<string, unknown>): Promise<TestCa> {
  const t = await startTestCa(overrides);
  cleanups.push(() => t.cleanup());
  return t;
}

/** CSRs made once: the CA does not mind a key signed twice, and the test process stays idle enough to measure. */
const csrPool: Buffer[] = [];

async function mintOnce(agent: TestAgent, entryId: string, n = 1): Promise<{ code: grpc.status; details: string; retryAfterMs?: number }> {
  while (csrPool.length < 5) csrPool.push((await newKey()).csr);
  const csrs = csrPool.slice(0, n).map((csr) => ({ csr }));
  const o = await rawUnary(agent.client, '/brevis.ca.v1.NodeService/BatchMintX509SVID', Buffer.from(BatchMintX509SVIDRequest.encode({ params: csrs.map((c) => ({ entryId, csr: c.csr })) }).finish()));
  const hint = retryHintOf(o.trailers);
  return { code: o.code, details: o.details, ...(hint !== undefined ? { retryAfterMs: hint } : {}) };
}

describe('token buckets', () => {
  it('let a burst through, then say exactly how long until the next token', () => {
    const b = new TokenBucket({ ratePerSecond: 2, burst: 3 }, 0);
    for (let i = 0; i < 3; i++) {
      expect(b.check(1, 0)).toEqual({ ok: true });
      b.take(1, 0);
    }
    expect(b.check(1, 0)).toEqual({ ok: false, retryAfterMs: 500 });
    expect(b.check(2, 250)).toEqual({ ok: false, retryAfterMs: 750 });
    expect(b.check(1, 500)).toEqual({ ok: true });
    expect(b.available(10_000)).toBe(3); // never more than the burst
    const off = new TokenBucket({ ratePerSecond: 0, burst: 1 }, 0);
    off.take(100, 0);
    expect(off.check(1_000_000, 0)).toEqual({ ok: true });
  });

  it('keep a bounded number of keys and forget buckets that are full again', () => {
    const k = new KeyedBuckets({ ratePerSecond: 1, burst: 1 }, 100);
    for (let i = 0; i < 500; i++) k.bucket(`agent-${i}`, 0).take(1, 0);
    expect(k.size).toBe(100);
    for (let i = 0; i < 1100; i++) k.bucket('busy', 10_000).take(0, 10_000);
    expect(k.size).toBe(1); // the others refilled and were forgotten
  });
});

describe('rate limit configuration', () => {
  it('has documented defaults, takes overrides from the config, and refuses nonsense', () => {
    const base = { dataDir: '/tmp/x', trustDomain: TD, listen: '127.0.0.1:0' };
    expect(buildCaConfig(base).rateLimits).toEqual(DEFAULT_RATE_LIMITS);
    expect(DEFAULT_RATE_LIMITS).toEqual({
      attestPerSource: { ratePerSecond: 5, burst: 50 },
      signPerAgent: { ratePerSecond: 500, burst: 5000 },
      signPerSource: { ratePerSecond: 2000, burst: 20_000 },
    });
    expect(buildCaConfig({ ...base, signRatePerAgent: 0.5, signBurstPerAgent: 2 }).rateLimits.signPerAgent).toEqual({ ratePerSecond: 0.5, burst: 2 });
    expect(() => buildCaConfig({ ...base, signRatePerAgent: -1 })).toThrow(/signRatePerAgent/);
    expect(() => buildCaConfig({ ...base, attestBurstPerSource: 0 })).toThrow(/attestBurstPerSource/);
  });

  it('the agent reads the retry hint from the trailers and never waits less than it says', () => {
    const md = new grpc.Metadata();
    md.set('retry-after-ms', '1500');
    const err = fromGrpcError('minting SVIDs', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'rate limit', metadata: md });
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.retryAfterMs).toBe(1500);
    expect(honourRetryHint(200, err)).toBe(1500);
    expect(honourRetryHint(4000, err)).toBe(4000);
    md.set('retry-after-ms', '999999999');
    expect(retryHintOf(md)).toBe(600_000);
    md.set('retry-after-ms', 'soon');
    expect(retryHintOf(md)).toBeUndefined();
  });
});

describe('rate limits on the node API', () => {
  it('answers an attestation flood from one source with ResourceExhausted and a retry hint once the burst is spent', async () => {
    const t = await ca({ attestRatePerSource: 1, attestBurstPerSource: 3 });
    const anon = nodeClient(t);
    cleanups.push(() => anon.close());
    const csr = (await newKey()).csr;
    const outcomes = [];
    for (let i = 0; i < 8; i++) {
      outcomes.push(await rawUnary(anon, '/brevis.ca.v1.NodeService/AttestJoinToken', Buffer.from(AttestJoinTokenRequest.encode({ token: `not-a-token-${i}`, csr }).finish())));
    }
    expect(outcomes.slice(0, 3).map((o) => statusName(o.code))).toEqual(['PERMISSION_DENIED', 'PERMISSION_DENIED', 'PERMISSION_DENIED']);
    const refused = outcomes.slice(3);
    for (const o of refused) {
      expect(statusName(o.code)).toBe('RESOURCE_EXHAUSTED');
      expect(o.details).toMatch(/^rate limit: attestations from 127\.0\.0\.1 are limited to 1 per second \(bursts of 3\); retry in \d+ ms$/);
      const hint = retryHintOf(o.trailers)!;
      expect(hint).toBeGreaterThan(0);
      expect(hint).toBeLessThanOrEqual(1000);
    }
    // Refused before the handler: no audit record for them.
    expect((await t.ca.store.listAudit()).filter((r) => r.action === 'attest.join_token')).toHaveLength(3);
  });

  it('a misbehaving agent flooding the CA spends only its own budget: a well-behaved agent on the same host is never refused', async () => {
    const t = await ca({ signRatePerAgent: 20, signBurstPerAgent: 20, signRatePerSource: 1000, signBurstPerSource: 1000 });
    const flooder = await attestAgent(t);
    const polite = await attestAgent(t);
    cleanups.push(() => flooder.client.close(), () => polite.client.close());
    const floodEntry = (await createEntry(t, { spiffeId: `spiffe://${TD}/flood`, parentId: flooder.agentId, selectors: ['unix:uid:1'] })).id;
    const politeEntry = (await createEntry(t, { spiffeId: `spiffe://${TD}/polite`, parentId: polite.agentId, selectors: ['unix:uid:2'] })).id;
    const until = Date.now() + 3000;
    const flood = { ok: 0, refused: 0 };
    const floodLoop = async () => {
      while (Date.now() < until) {
        const r = await mintOnce(flooder, floodEntry, 5);
        if (r.code === grpc.status.OK) flood.ok++;
        else if (r.code === grpc.status.RESOURCE_EXHAUSTED) flood.refused++;
        else throw new Error(`unexpected ${statusName(r.code)}: ${r.details}`);
      }
    };
    const politeResults: Array<{ code: grpc.status; ms: number }> = [];
    const politeLoop = async () => {
      while (Date.now() < until) {
        const t0 = Date.now();
        const r = await mintOnce(polite, politeEntry);
        politeResults.push({ code: r.code, ms: Date.now() - t0 });
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    await Promise.all([floodLoop(), floodLoop(), floodLoop(), floodLoop(), politeLoop()]);
    const politeRefused = politeResults.filter((r) => r.code !== grpc.status.OK);
    const slowest = Math.max(...politeResults.map((r) => r.ms));
    console.log(`flooding agent: ${flood.ok} batches of 5 minted, ${flood.refused} refused; polite agent: ${politeResults.length} mints, ${politeRefused.length} refused, slowest ${slowest} ms`);
    expect(politeResults.length).toBeGreaterThanOrEqual(10);
    expect(politeRefused).toEqual([]);
    expect(flood.refused).toBeGreaterThan(flood.ok);
    // 20 at once plus 20 a second for 3 s, in batches of 5.
    expect(flood.ok * 5).toBeLessThanOrEqual(20 + 20 * 3.5);
  });

  it('a throttled agent waits as long as the CA asks before trying again, then gets its SVID', async () => {
    const t = await ca({ signRatePerAgent: 0.25, signBurstPerAgent: 1 });
    const tmp = tempDir('brevis-limits-agent-');
    cleanups.push(tmp.cleanup);
    const tok = await createJoinToken(t);
    await createEntry(t, { spiffeId: `spiffe://${TD}/first`, parentId: tok.agentId, selectors: ['unix:uid:1'] });
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push({ ...(JSON.parse(s) as Record<string, unknown>), at: Date.now() }) });
    // Its own backoff starts at 50 ms: only the CA's hint can make it wait longer.
    const agent = await startAgent(agentConfig(t, tmp.dir, { joinToken: tok.token, syncInterval: '1s' }), { logger, backoff: { initialMs: 50, maxMs: 100 } });
    cleanups.push(() => agent.close());
    await waitFor(() => agent.cache.svidsFor(new Set(['unix:uid:1'])).length === 1, 10_000, 'the first SVID (the whole burst)');
    await createEntry(t, { spiffeId: `spiffe://${TD}/second`, parentId: tok.agentId, selectors: ['unix:uid:2'] });
    await waitFor(() => agent.cache.svidsFor(new Set(['unix:uid:2'])).length === 1, 15_000, 'the second SVID once the bucket refilled');
    const refusals = lines.filter((l) => l.msg === 'sync with the CA failed; still serving valid SVIDs' && /RESOURCE_EXHAUSTED: rate limit/.test(String(l.err)));
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    for (const r of refusals) expect(r.retryInMs as number).toBeGreaterThan(500);
    // Without the hint it would have retried every ~100 ms for about 4 s.
    expect(refusals.length).toBeLessThanOrEqual(3);
  });
});
