import { X509Certificate } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import type { BackoffPolicy } from '../agent/sync/backoff.js';
import type { WorkloadSvid } from '../agent/workload-api/provider.js';
import { startTestCa, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, testLogger, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const uid1000 = new Set(['unix:uid:1000']);
const CA_OVERRIDES = { x509SvidMinTtl: '30s' };
const serialOf = (s: WorkloadSvid) => new X509Certificate(s.chain[0]!).serialNumber;

/** A CA whose SVIDs live 30 s, an agent synced with it, and a way to bring the CA back on the same port and data. */
async function setup(backoff?: BackoffPolicy): Promise<{ agent: RunningAgent; first: WorkloadSvid; stopCa: () => Promise<void>; restartCa: () => Promise<TestCa> }> {
  let t = await startTestCa(CA_OVERRIDES);
  const port = t.ca.port;
  const caDir = t.dir;
  let running = true;
  cleanups.push(() => t.cleanup());
  const tmp = tempDir('brevis-agent-');
  cleanups.push(tmp.cleanup);
  const { token, agentId } = await createJoinToken(t);
  await createEntry(t, { spiffeId: 'spiffe://example.org/web', parentId: agentId, selectors: ['unix:uid:1000'], x509SvidTtl: 30 });
  const agent = await startAgent(agentConfig(t, tmp.dir, { joinToken: token, syncInterval: '1s' }), { logger: testLogger(), ...(backoff ? { backoff } : {}) });
  cleanups.push(() => agent.close());
  const first = await waitFor(() => agent.cache.svidsFor(uid1000)[0], 10_000, 'the first SVID');
  return {
    agent,
    first,
    stopCa: async () => {
      running = false;
      await t.stop();
    },
    restartCa: async () => {
      expect(running).toBe(false);
      t = await startTestCa({ ...CA_OVERRIDES, listen: `127.0.0.1:${port}` }, caDir);
      running = true;
      return t;
    },
  };
}

/** Samples what the agent serves every 100 ms until `until` (epoch ms). */
async function sample(agent: RunningAgent, until: number): Promise<Array<{ at: number; serial: string | null }>> {
  const out: Array<{ at: number; serial: string | null }> = [];
  while (Date.now() < until) {
    const s = agent.cache.svidsFor(uid1000)[0];
    out.push({ at: Date.now(), serial: s ? serialOf(s) : null });
    await new Promise((r) => setTimeout(r, 100));
  }
  return out;
}

describe('the agent while the CA is unreachable', () => {
  it('keeps serving its valid SVID and renews it before expiry once the CA returns, with no gap', async () => {
    const { agent, first, stopCa, restartCa } = await setup();
    await stopCa();
    // The rotation point (~15 s) passes with the CA down; the CA returns 5 s before expiry.
    const back = first.notAfter.getTime() - 5_000;
    const whileDown = await sample(agent, back);
    expect(whileDown.length).toBeGreaterThan(100);
    expect(whileDown.every((s) => s.serial === serialOf(first))).toBe(true);
    await restartCa();
    // Default backoff (up to 30 s), yet the retry comes before the SVID lapses.
    const after = await sample(agent, first.notAfter.getTime() + 1_000);
    expect(after.every((s) => s.serial !== null)).toBe(true);
    expect(after.at(-1)!.serial).not.toBe(serialOf(first));
  }, 80_000);

  it('lets an SVID it could not renew disappear at expiry, then recovers when the CA returns on the same port and data', async () => {
    const { agent, first, stopCa, restartCa } = await setup({ initialMs: 200, maxMs: 2_000 });
    const changes: Array<{ at: number; count: number }> = [];
    agent.cache.onChange(() => changes.push({ at: Date.now(), count: agent.cache.svidsFor(uid1000).length }));
    await stopCa();
    const expiry = first.notAfter.getTime();
    const untilExpiry = await sample(agent, expiry - 300);
    expect(untilExpiry.every((s) => s.serial === serialOf(first))).toBe(true);
    await waitFor(() => agent.cache.svidsFor(uid1000).length === 0, 2_000, 'the expired SVID to disappear');
    // Listeners heard about the expiry (streams drop the SVID rather than serve a stale one).
    await waitFor(() => changes.some((c) => c.at >= expiry && c.count === 0), 2_000, 'an expiry notification');
    expect(agent.cache.isReady()).toBe(true);

    await restartCa();
    const recovered = await waitFor(() => agent.cache.svidsFor(uid1000)[0], 10_000, 'a new SVID from the returned CA');
    expect(serialOf(recovered)).not.toBe(serialOf(first));
    expect(recovered.notAfter.getTime()).toBeGreaterThan(Date.now());
  }, 80_000);
});
