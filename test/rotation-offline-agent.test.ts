/**
 * An agent that was offline during a root rotation: it comes back with
 * only the old root in its stored bundle and an agent SVID chained to it.
 * While the old root is still trusted (retired), the CA serves chains
 * cross-signed by it, so the agent reaches the CA, learns the new bundle
 * and carries on. Once the old root is revoked, the agent cannot verify
 * the CA any more and says how to re-bootstrap.
 */
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { chainAuthorityIds } from '../agent/push/chain-ids.js';
import { activeOf } from '../ca/rotation/model.js';
import { startTestCa, toPem, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }), lines };
}

const uid1000 = new Set(['unix:uid:1000']);

async function offlineAgent(): Promise<{ t: TestCa; dir: string; start: () => Promise<{ agent: RunningAgent; lines: string[] }>; agentId: string }> {
  const t = await startTestCa();
  cleanups.push(() => t.cleanup());
  const tmp = tempDir('brevis-offline-');
  cleanups.push(tmp.cleanup);
  const { token, agentId } = await createJoinToken(t);
  await createEntry(t, { spiffeId: 'spiffe://example.org/w', parentId: agentId, selectors: ['unix:uid:1000'] });
  const config = agentConfig(t, tmp.dir, { joinToken: token, syncInterval: '1s' });
  const start = async () => {
    const { logger, lines } = capturingLogger();
    const agent = await startAgent(config, { logger, backoff: { initialMs: 200, maxMs: 1_000 } });
    cleanups.push(() => agent.close());
    return { agent, lines };
  };
  const first = await start();
  await waitFor(() => first.agent.cache.svidsFor(uid1000).length === 1, 10_000, 'the first SVID');
  await first.agent.close();
  return { t, dir: tmp.dir, start, agentId };
}

describe('an agent offline during a root rotation', () => {
  it('recovers when it comes back while the old root is still trusted', async () => {
    const { t, dir, start } = await offlineAgent();
    const lc = t.ca.lifecycle;
    const oldRoot = activeOf(lc.snapshot, 'x509-root')!;
    const p = await lc.prepare('x509-root', { caller: 'test' });
    // The offline agent cannot acknowledge: the admin forces the activation.
    await lc.activate('x509-root', p.prepared.id, { caller: 'test', force: true });
    const stored = readFileSync(path.join(dir, 'agent-data', 'bundle.pem'), 'utf8');
    expect(stored).toBe(toPem([oldRoot.publicDer]));

    const { agent } = await start();
    await waitFor(() => agent.cache.bundle().length === 2, 10_000, 'the new bundle');
    expect(readFileSync(path.join(dir, 'agent-data', 'bundle.pem'), 'utf8').match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    // It renews and mints as before; new SVIDs come cross-signed by the old root.
    const renewed = agent.agentSvid().serial;
    await t.ca.lifecycle.taint('x509-root', oldRoot.id, { caller: 'test' });
    await waitFor(() => agent.agentSvid().serial !== renewed && !chainAuthorityIds(agent.agentSvid().chain).includes(oldRoot.id), 10_000, 'the agent SVID from the new root');
    await waitFor(() => agent.cache.svidsFor(uid1000).every((s) => !chainAuthorityIds(s.chain).includes(oldRoot.id)), 10_000, 'workload SVIDs from the new root');
  });

  it('says how to re-bootstrap when it comes back after the old root was revoked', async () => {
    const { t, dir, start, agentId } = await offlineAgent();
    const lc = t.ca.lifecycle;
    const oldRoot = activeOf(lc.snapshot, 'x509-root')!;
    const p = await lc.prepare('x509-root', { caller: 'test' });
    await lc.activate('x509-root', p.prepared.id, { caller: 'test', force: true });
    await lc.taint('x509-root', oldRoot.id, { caller: 'test' });
    await lc.revoke('x509-root', oldRoot.id, { caller: 'test', force: true });

    const { agent, lines } = await start();
    await waitFor(() => lines.some((l) => l.includes('cannot verify the CA')), 10_000, 'the advice');
    const advice = JSON.parse(lines.find((l) => l.includes('cannot verify the CA'))!) as { msg: string };
    expect(advice.msg).toMatch(/trust bundle .* no longer matches the CA/);
    expect(advice.msg).toContain(path.join(dir, 'agent-data', 'bundle.pem'));
    expect(advice.msg).toMatch(/--trust-bundle/);
    // It says so once, not at every retry.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(lines.filter((l) => l.includes('cannot verify the CA'))).toHaveLength(1);
    // Following the advice: the stored bundle removed, the current bundle given, and (the agent SVID chains to
    // the revoked root) a new join token: the agent is back.
    await agent.close();
    rmSync(path.join(dir, 'agent-data', 'bundle.pem'));
    const { token } = await createJoinToken(t, agentId);
    const again = await startAgent(agentConfig(t, dir, { joinToken: token, syncInterval: '1s' }), { logger: pino({ level: 'silent' }) });
    cleanups.push(() => again.close());
    await waitFor(() => again.cache.svidsFor(uid1000).length === 1, 10_000, 'SVIDs again');
    expect(chainAuthorityIds(again.agentSvid().chain)).toContain(p.prepared.id);
  });
});
