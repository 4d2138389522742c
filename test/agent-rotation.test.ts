import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent } from '../agent/agent.js';
import { AGENT_SVID_FILE } from '../agent/svid/storage.js';
import { startTestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, testLogger, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const uid1000 = new Set(['unix:uid:1000']);
const serialOf = (der: Buffer) => new X509Certificate(der).serialNumber;

describe('rotation ahead of expiry (real 30-second SVIDs)', () => {
  it('replaces workload and agent SVIDs at about half their lifetime, before they expire, and tells listeners', async () => {
    const t = await startTestCa({ x509SvidMinTtl: '30s', agentSvidTtl: '30s' });
    cleanups.push(() => t.cleanup());
    const tmp = tempDir('brevis-agent-');
    cleanups.push(tmp.cleanup);
    const { token, agentId } = await createJoinToken(t);
    await createEntry(t, { spiffeId: 'spiffe://example.org/web', parentId: agentId, selectors: ['unix:uid:1000'], x509SvidTtl: 30 });
    const config = agentConfig(t, tmp.dir, { joinToken: token, syncInterval: '1s' });
    const agent = await startAgent(config, { logger: testLogger() });
    cleanups.push(() => agent.close());
    const firstAgentSvid = agent.agentSvid();
    const first = await waitFor(() => agent.cache.svidsFor(uid1000)[0], 10_000, 'the first SVID');
    const firstMintedAt = Date.now();

    const seen: Array<{ at: number; serial: string | null }> = [];
    agent.cache.onChange(() => {
      const s = agent.cache.svidsFor(uid1000)[0];
      seen.push({ at: Date.now(), serial: s ? serialOf(s.chain[0]!) : null });
    });

    const second = await waitFor(() => {
      const s = agent.cache.svidsFor(uid1000)[0];
      return s && serialOf(s.chain[0]!) !== serialOf(first.chain[0]!) && s;
    }, 25_000, 'the rotated SVID');
    const rotatedAt = Date.now();
    // Half of 30 s, ±10%, counted from when the agent got it (plus a sync's slack).
    expect(rotatedAt - firstMintedAt).toBeGreaterThan(13_000);
    expect(rotatedAt).toBeLessThan(first.notAfter.getTime() - 10_000);
    expect(second.spiffeId).toBe('spiffe://example.org/web');
    expect(second.notAfter.getTime()).toBeGreaterThan(first.notAfter.getTime());
    expect(second.key.equals(first.key)).toBe(false);
    expect(seen.some((c) => c.serial === serialOf(second.chain[0]!))).toBe(true);
    expect(seen.every((c) => c.serial !== null)).toBe(true);

    // The agent's own 30 s SVID was renewed too, stored, and the CA accepts the new one.
    const renewed = await waitFor(() => agent.agentSvid().serial !== firstAgentSvid.serial && agent.agentSvid(), 10_000, 'the renewed agent SVID');
    expect(renewed.spiffeId).toBe(agentId);
    expect(renewed.notAfter.getTime()).toBeGreaterThan(firstAgentSvid.notAfter.getTime());
    const stored = new X509Certificate(readFileSync(path.join(config.dataDir, AGENT_SVID_FILE), 'utf8'));
    expect(stored.serialNumber.toLowerCase().replace(/^0+/, '')).toBe(renewed.serial);
    await createEntry(t, { spiffeId: 'spiffe://example.org/after-renewal', parentId: agentId, selectors: ['unix:uid:1000'], x509SvidTtl: 30 });
    await waitFor(() => agent.cache.svidsFor(uid1000).some((s) => s.spiffeId === 'spiffe://example.org/after-renewal'), 5_000, 'a sync with the renewed agent SVID');
  }, 60_000);
});
