import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent } from '../agent/agent.js';
import { AgentSvidError } from '../agent/svid/errors.js';
import { realClock, type Clock } from '../spiffe/clock.js';
import { call, startTestCa, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, tempDir, testLogger, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const SERVER_ID = 'spiffe://example.org/brevis/server';

interface HostPki {
  caFile: string;
  certFile: string;
  keyFile: string;
  caFingerprint: string;
  nodeFingerprint: string;
}

/** A host CA and a node certificate issued by it, made by openssl. */
function makeHostPki(dir: string, cn: string, dns: string): HostPki {
  const f = (n: string) => path.join(dir, n);
  const ossl = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('hostca.key'), '-out', f('hostca.pem'),
    '-subj', '/CN=Test Host CA', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('node.key'), '-out', f('node.csr'), '-subj', `/CN=${cn}`]);
  writeFileSync(f('node.ext'), `subjectAltName=DNS:${dns}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n`);
  ossl(['x509', '-req', '-in', f('node.csr'), '-CA', f('hostca.pem'), '-CAkey', f('hostca.key'), '-CAcreateserial', '-out', f('node.pem'), '-days', '1', '-extfile', f('node.ext')]);
  const fp = (file: string) => createHash('sha256').update(new X509Certificate(readFileSync(file)).raw).digest('hex');
  return { caFile: f('hostca.pem'), certFile: f('node.pem'), keyFile: f('node.key'), caFingerprint: fp(f('hostca.pem')), nodeFingerprint: fp(f('node.pem')) };
}

async function setup(caOverrides: Record<string, unknown> = {}): Promise<{ t: TestCa; dir: string; pki: HostPki }> {
  const tmp = tempDir('brevis-agent-x509pop-');
  cleanups.push(tmp.cleanup);
  const pki = makeHostPki(tmp.dir, 'node-1', 'node-1.example.internal');
  const t = await startTestCa({ x509popCaBundle: pki.caFile, ...caOverrides });
  cleanups.push(() => t.cleanup());
  return { t, dir: tmp.dir, pki };
}

describe('x509pop agent', () => {
  it('attests with its host certificate, and its node selectors bring it the entries of matching node entries', async () => {
    const { t, dir, pki } = await setup();
    const agentId = `spiffe://example.org/brevis/agent/x509pop/${pki.nodeFingerprint}`;
    await createEntry(t, { spiffeId: 'spiffe://example.org/nodes/web-tier', parentId: SERVER_ID, selectors: ['x509pop:subject:cn:node-1'] });
    await createEntry(t, { spiffeId: 'spiffe://example.org/web', parentId: 'spiffe://example.org/nodes/web-tier', selectors: ['unix:uid:1000'] });
    await createEntry(t, { spiffeId: 'spiffe://example.org/nodes/by-ca', parentId: SERVER_ID, selectors: [`x509pop:ca:fingerprint:${pki.caFingerprint}`, 'x509pop:san:dns:node-1.example.internal'] });
    await createEntry(t, { spiffeId: 'spiffe://example.org/metrics', parentId: 'spiffe://example.org/nodes/by-ca', selectors: ['unix:uid:1000'] });
    await createEntry(t, { spiffeId: 'spiffe://example.org/nodes/db-tier', parentId: SERVER_ID, selectors: ['x509pop:subject:cn:node-2'] });
    await createEntry(t, { spiffeId: 'spiffe://example.org/db', parentId: 'spiffe://example.org/nodes/db-tier', selectors: ['unix:uid:1000'] });

    const agent = await startAgent(agentConfig(t, dir, { x509popCert: pki.certFile, x509popKey: pki.keyFile }), { logger: testLogger() });
    cleanups.push(() => agent.close());
    expect(agent.agentSvid().spiffeId).toBe(agentId);
    await waitFor(() => agent.cache.isReady(), 10_000, 'the first sync');
    expect(agent.cache.svidsFor(new Set(['unix:uid:1000'])).map((s) => s.spiffeId).sort()).toEqual(['spiffe://example.org/metrics', 'spiffe://example.org/web']);

    const { agents } = await call<object, { agents: Array<{ agentId: string; attestationType: string; selectors: Array<{ type: string; value: string }> }> }>(t.admin, 'listAgents', {});
    expect(agents).toHaveLength(1);
    expect(agents[0]!.agentId).toBe(agentId);
    expect(agents[0]!.attestationType).toBe('x509pop');
    expect(agents[0]!.selectors.map((s) => `${s.type}:${s.value}`).sort()).toEqual(
      [`x509pop:ca:fingerprint:${pki.caFingerprint}`, 'x509pop:san:dns:node-1.example.internal', 'x509pop:subject:cn:node-1'].sort(),
    );
  });

  it('attests again by itself after the CA evicts it, and keeps syncing', async () => {
    const { t, dir, pki } = await setup();
    const agent = await startAgent(agentConfig(t, dir, { x509popCert: pki.certFile, x509popKey: pki.keyFile }), { logger: testLogger() });
    cleanups.push(() => agent.close());
    await waitFor(() => agent.cache.isReady(), 10_000, 'the first sync');
    const before = agent.agentSvid();
    await call(t.admin, 'evictAgent', { agentId: before.spiffeId });
    const after = await waitFor(() => agent.agentSvid().serial !== before.serial && agent.agentSvid(), 8_000, 'a new attestation');
    expect(after.spiffeId).toBe(before.spiffeId);
    await createEntry(t, { spiffeId: 'spiffe://example.org/late', parentId: before.spiffeId, selectors: ['unix:uid:1000'] });
    await waitFor(() => agent.cache.svidsFor(new Set(['unix:uid:1000'])).length === 1, 5_000, 'an entry created after the eviction');
    const state = await Promise.race([agent.stopped, new Promise((r) => setTimeout(() => r('running'), 100))]);
    expect(state).toBe('running');
  });

  it('attests again at start when its stored agent SVID has expired', async () => {
    const { t, dir, pki } = await setup({ agentSvidTtl: '30s' });
    const config = agentConfig(t, dir, { x509popCert: pki.certFile, x509popKey: pki.keyFile });
    const first = await startAgent(config, { logger: testLogger() });
    const old = first.agentSvid();
    await first.close();
    // The CA comes back issuing one-hour agent SVIDs; 40 s later by the
    // agent's clock, the stored 30 s one has expired.
    await t.stop();
    const t2 = await startTestCa({ x509popCaBundle: pki.caFile, agentSvidTtl: '1h' }, t.dir);
    cleanups.push(() => t2.stop());
    const later: Clock = { now: () => new Date(Date.now() + 40_000), sleep: realClock.sleep };
    const second = await startAgent(agentConfig(t2, dir, { x509popCert: pki.certFile, x509popKey: pki.keyFile }), { logger: testLogger(), clock: later });
    cleanups.push(() => second.close());
    expect(second.agentSvid().spiffeId).toBe(old.spiffeId);
    expect(second.agentSvid().serial).not.toBe(old.serial);
    expect(second.agentSvid().notAfter.getTime()).toBeGreaterThan(old.notAfter.getTime() + 1_800_000);
  });

  it('stops with a clear error when the CA does not trust the node certificate', async () => {
    const { t, dir } = await setup();
    const other = tempDir('brevis-agent-otherpki-');
    cleanups.push(other.cleanup);
    const stranger = makeHostPki(other.dir, 'node-9', 'node-9.example.internal');
    const err = await startAgent(agentConfig(t, dir, { x509popCert: stranger.certFile, x509popKey: stranger.keyFile }), { logger: testLogger() }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AgentSvidError);
    expect((err as AgentSvidError).code).toBe('ATTESTATION_FAILED');
    expect((err as Error).message).toMatch(/not issued by a trusted CA/);
  });
});
