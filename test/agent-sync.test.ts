import { X509Certificate } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { MAX_MINT_BATCH as CA_MAX_BATCH } from '../ca/api/node-service.js';
import { startTestCa, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, deleteEntry, tempDir, testLogger, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function attestedAgent(): Promise<{ t: TestCa; agent: RunningAgent; agentId: string; dataDir: string }> {
  const t = await startTestCa();
  cleanups.push(() => t.cleanup());
  const tmp = tempDir('brevis-agent-');
  cleanups.push(tmp.cleanup);
  const { token, agentId } = await createJoinToken(t);
  const config = agentConfig(t, tmp.dir, { joinToken: token, syncInterval: '1s' });
  const agent = await startAgent(config, { logger: testLogger() });
  cleanups.push(() => agent.close());
  await waitFor(() => agent.cache.isReady(), 10_000, 'the first sync');
  return { t, agent, agentId, dataDir: config.dataDir };
}

const uid1000 = new Set(['unix:uid:1000']);

describe('sync with the CA', () => {
  it('delivers an entry created on the CA within the sync interval, and removes a deleted one', async () => {
    const { t, agent, agentId } = await attestedAgent();
    let changes = 0;
    agent.cache.onChange(() => changes++);
    expect(agent.cache.svidsFor(uid1000)).toEqual([]);

    const created = Date.now();
    const e = await createEntry(t, { spiffeId: 'spiffe://example.org/api', parentId: agentId, selectors: ['unix:uid:1000'] });
    const svids = await waitFor(() => {
      const s = agent.cache.svidsFor(uid1000);
      return s.length > 0 && s;
    }, 5_000, 'the new entry to reach the agent');
    // One-second interval, plus a mint round trip.
    expect(Date.now() - created).toBeLessThan(2_500);
    expect(svids.map((s) => s.spiffeId)).toEqual(['spiffe://example.org/api']);
    expect(changes).toBeGreaterThan(0);

    const deleted = Date.now();
    await deleteEntry(t, e.id);
    await waitFor(() => agent.cache.svidsFor(uid1000).length === 0, 5_000, 'the deleted entry to leave the agent');
    expect(Date.now() - deleted).toBeLessThan(2_500);
  });

  it('stays quiet while nothing changes on the CA', async () => {
    const { t, agent, agentId } = await attestedAgent();
    await createEntry(t, { spiffeId: 'spiffe://example.org/api', parentId: agentId, selectors: ['unix:uid:1000'] });
    await waitFor(() => agent.cache.svidsFor(uid1000).length > 0, 5_000, 'the entry');
    const serial = new X509Certificate(agent.cache.svidsFor(uid1000)[0]!.chain[0]!).serialNumber;
    let changes = 0;
    agent.cache.onChange(() => changes++);
    // Three sync intervals with the default one-hour TTL: nothing to rotate, nothing new.
    await new Promise((r) => setTimeout(r, 3_200));
    expect(changes).toBe(0);
    expect(new X509Certificate(agent.cache.svidsFor(uid1000)[0]!.chain[0]!).serialNumber).toBe(serial);
  });

  it('mints more SVIDs than the CA accepts in one call by sending batches', async () => {
    const t = await startTestCa();
    cleanups.push(() => t.cleanup());
    const tmp = tempDir('brevis-agent-');
    cleanups.push(tmp.cleanup);
    const { token, agentId } = await createJoinToken(t);
    // All entries exist before the agent starts, so its first sync must mint them all at once.
    const n = CA_MAX_BATCH + 200;
    for (let i = 0; i < n; i++) {
      await createEntry(t, { id: `e${String(i).padStart(5, '0')}`, spiffeId: `spiffe://example.org/w/${i}`, parentId: agentId, selectors: [`unix:uid:${10_000 + i}`] });
    }
    const agent = await startAgent(agentConfig(t, tmp.dir, { joinToken: token }), { logger: testLogger() });
    cleanups.push(() => agent.close());
    await waitFor(() => agent.cache.isReady(), 60_000, 'the first sync');
    expect(agent.cache.entries()).toHaveLength(n);
    const missing = agent.cache.entries().filter((e) => agent.cache.svidOf(e.id) === null);
    expect(missing).toEqual([]);
    expect(agent.cache.svidsFor(new Set(['unix:uid:10000'])).map((s) => s.spiffeId)).toEqual(['spiffe://example.org/w/0']);
    expect(agent.cache.svidsFor(new Set([`unix:uid:${10_000 + n - 1}`])).map((s) => s.spiffeId)).toEqual([`spiffe://example.org/w/${n - 1}`]);
  }, 90_000);

  it('keeps workload keys in memory only: the data directory holds the agent SVID and the bundle', async () => {
    const { t, agent, agentId, dataDir } = await attestedAgent();
    await createEntry(t, { spiffeId: 'spiffe://example.org/a', parentId: agentId, selectors: ['unix:uid:1000'] });
    await createEntry(t, { spiffeId: 'spiffe://example.org/b', parentId: agentId, selectors: ['unix:uid:1000'] });
    await waitFor(() => agent.cache.svidsFor(uid1000).length === 2, 5_000, 'both entries');
    const [a, b] = agent.cache.svidsFor(uid1000);
    expect(a!.key.equals(b!.key)).toBe(false);
    expect(readdirSync(dataDir).sort()).toEqual(['agent-svid.pem', 'bundle.pem']);
  });
});
