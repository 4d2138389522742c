import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { AgentSvidError } from '../agent/svid/errors.js';
import { AGENT_BUNDLE_FILE, AGENT_SVID_FILE } from '../agent/svid/storage.js';
import { realClock, type Clock } from '../spiffe/clock.js';
import { call, startTestCa, toPem, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, testLogger, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(): Promise<{ t: TestCa; dir: string }> {
  const t = await startTestCa();
  cleanups.push(() => t.cleanup());
  const tmp = tempDir('brevis-agent-');
  cleanups.push(tmp.cleanup);
  return { t, dir: tmp.dir };
}

function track(agent: RunningAgent): RunningAgent {
  cleanups.push(() => agent.close());
  return agent;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe('join-token agent', () => {
  it('attests with a join token, stores its SVID privately, and mints SVIDs for its entries', async () => {
    const { t, dir } = await setup();
    const { token, agentId } = await createJoinToken(t);
    const web = await createEntry(t, { id: 'b-web', spiffeId: 'spiffe://example.org/web', parentId: agentId, selectors: ['unix:uid:1000'], dnsNames: ['web.local'] });
    const db = await createEntry(t, { id: 'a-db', spiffeId: 'spiffe://example.org/db', parentId: agentId, selectors: ['unix:uid:1000', 'unix:gid:50'] });
    await createEntry(t, { spiffeId: 'spiffe://example.org/other', parentId: agentId, selectors: ['unix:uid:2000'] });
    const config = agentConfig(t, dir, { joinToken: token });
    const agent = track(await startAgent(config, { logger: testLogger() }));

    expect(agent.agentSvid().spiffeId).toBe(agentId);
    await waitFor(() => agent.cache.isReady(), 10_000, 'the first sync');

    const only1000 = agent.cache.svidsFor(new Set(['unix:uid:1000']));
    expect(only1000.map((s) => s.spiffeId)).toEqual(['spiffe://example.org/web']);
    const both = agent.cache.svidsFor(new Set(['unix:uid:1000', 'unix:gid:50', 'unix:user:app']));
    // Ordered by entry id: a-db is the default identity.
    expect(both.map((s) => s.entryId)).toEqual([db.id, web.id]);
    expect(agent.cache.svidsFor(new Set(['unix:uid:3000']))).toEqual([]);

    const svid = only1000[0]!;
    const leaf = new X509Certificate(svid.chain[0]!);
    expect(leaf.subjectAltName).toContain('URI:spiffe://example.org/web');
    expect(leaf.subjectAltName).toContain('DNS:web.local');
    expect(leaf.checkPrivateKey(createPrivateKey({ key: svid.key, format: 'der', type: 'pkcs8' }))).toBe(true);
    expect(svid.notAfter.getTime()).toBe(new Date(leaf.validTo).getTime());
    expect(agent.cache.bundle().map((b) => b.toString('base64'))).toEqual(t.roots().map((b) => b.toString('base64')));

    // The SVID verifies against the bundle, judged by openssl.
    writeFileSync(path.join(dir, 'roots.pem'), toPem(t.roots()));
    writeFileSync(path.join(dir, 'chain.pem'), toPem(svid.chain));
    writeFileSync(path.join(dir, 'leaf.pem'), toPem([svid.chain[0]!]));
    const verified = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', path.join(dir, 'roots.pem'), '-untrusted', path.join(dir, 'chain.pem'), path.join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(verified).toContain(': OK');

    // The agent's own SVID and key sit in the data dir, 0600; the bundle next to them.
    const svidFile = path.join(config.dataDir, AGENT_SVID_FILE);
    expect(statSync(svidFile).mode & 0o777).toBe(0o600);
    const stored = readFileSync(svidFile, 'utf8');
    expect(stored).toContain('-----BEGIN PRIVATE KEY-----');
    expect(new X509Certificate(stored).serialNumber.toLowerCase().replace(/^0+/, '')).toBe(agent.agentSvid().serial);
    expect(readFileSync(path.join(config.dataDir, AGENT_BUNDLE_FILE), 'utf8')).toBe(toPem(t.roots()));
  });

  it('restarts on its stored agent SVID without redeeming the spent join token again', async () => {
    const { t, dir } = await setup();
    const { token, agentId } = await createJoinToken(t);
    await createEntry(t, { spiffeId: 'spiffe://example.org/web', parentId: agentId, selectors: ['unix:uid:1000'] });
    const config = agentConfig(t, dir, { joinToken: token });
    const first = await startAgent(config, { logger: testLogger() });
    const serial = first.agentSvid().serial;
    await waitFor(() => first.cache.isReady(), 10_000, 'the first sync');
    await first.close();
    expect(await first.stopped).toBeNull();

    // The same (now spent) token is still in the config: a second redemption would be refused.
    const again = track(await startAgent(config, { logger: testLogger() }));
    expect(again.agentSvid().serial).toBe(serial);
    await waitFor(() => again.cache.isReady(), 10_000, 'a sync after the restart');
    expect(again.cache.svidsFor(new Set(['unix:uid:1000'])).map((s) => s.spiffeId)).toEqual(['spiffe://example.org/web']);

    // Proof that the token really is spent: redeeming it directly is refused.
    const agents = await call<object, { agents: Array<{ agentId: string; serial: string }> }>(t.admin, 'listAgents', {});
    expect(agents.agents.map((a) => a.agentId)).toEqual([agentId]);
    await again.close();
    const fresh = tempDir('brevis-agent-');
    cleanups.push(fresh.cleanup);
    const err = await rejection(startAgent(agentConfig(t, fresh.dir, { joinToken: token }), { logger: testLogger() }));
    expect(err).toBeInstanceOf(AgentSvidError);
    expect((err as AgentSvidError).code).toBe('JOIN_TOKEN_REQUIRED');
    expect((err as AgentSvidError).message).toMatch(/already used/);
  });

  it('refuses to start with an expired agent SVID and tells the operator to create a new join token', async () => {
    const t = await startTestCa({ agentSvidTtl: '30s' });
    cleanups.push(() => t.cleanup());
    const tmp = tempDir('brevis-agent-');
    cleanups.push(tmp.cleanup);
    const { token } = await createJoinToken(t);
    const first = await startAgent(agentConfig(t, tmp.dir, { joinToken: token }), { logger: testLogger() });
    await first.close();

    // The CA comes back issuing one-hour agent SVIDs; 40 s later by the
    // agent's clock, the stored 30 s one has expired.
    await t.stop();
    const t2 = await startTestCa({ agentSvidTtl: '1h' }, t.dir);
    cleanups.push(() => t2.stop());
    const later: Clock = { now: () => new Date(Date.now() + 40_000), sleep: realClock.sleep };
    for (const raw of [{}, { joinToken: token }]) {
      const err = await rejection(startAgent(agentConfig(t2, tmp.dir, raw), { logger: testLogger(), clock: later }));
      expect(err).toBeInstanceOf(AgentSvidError);
      expect((err as AgentSvidError).code).toBe('JOIN_TOKEN_REQUIRED');
      expect((err as Error).message).toMatch(/expired at/);
      expect((err as Error).message).toMatch(/brevis-ca token create/);
      expect((err as Error).message).toMatch(/--join-token/);
      expect((err as Error).message).not.toContain(token);
    }

    // With a new token it attests again, in the same data dir.
    const fresh = await createJoinToken(t2);
    const renewed = track(await startAgent(agentConfig(t2, tmp.dir, { joinToken: fresh.token }), { logger: testLogger(), clock: later }));
    expect(renewed.agentSvid().spiffeId).toBe(fresh.agentId);
  });

  it('refuses a first start without any attestation method, naming both', async () => {
    const { t, dir } = await setup();
    const err = await rejection(startAgent(agentConfig(t, dir), { logger: testLogger() }));
    expect(err).toBeInstanceOf(AgentSvidError);
    expect((err as AgentSvidError).code).toBe('NO_ATTESTATION');
    expect((err as Error).message).toMatch(/--join-token/);
    expect((err as Error).message).toMatch(/--x509pop-cert/);
  });

  it('stops with the join-token advice when the CA evicts it', async () => {
    const { t, dir } = await setup();
    const { token, agentId } = await createJoinToken(t);
    await createEntry(t, { spiffeId: 'spiffe://example.org/web', parentId: agentId, selectors: ['unix:uid:1000'] });
    let told: Error | null = null;
    const agent = track(await startAgent(agentConfig(t, dir, { joinToken: token }), { logger: testLogger(), onFatal: (e) => (told = e) }));
    await waitFor(() => agent.cache.isReady(), 10_000, 'the first sync');
    await call(t.admin, 'evictAgent', { agentId });
    const stopped = await Promise.race([agent.stopped, new Promise((r) => setTimeout(() => r('still running'), 8_000))]);
    expect(stopped).toBeInstanceOf(AgentSvidError);
    expect((stopped as AgentSvidError).code).toBe('JOIN_TOKEN_REQUIRED');
    expect((stopped as Error).message).toMatch(/brevis-ca token create/);
    await waitFor(() => told !== null, 2_000, 'onFatal');
  });
});
