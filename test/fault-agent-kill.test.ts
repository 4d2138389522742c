/**
 * The agent process killed with SIGKILL and started again: it keeps its
 * identity (its stored SVID, no new attestation, no join token needed),
 * replaces the stale socket, and a workload's X509Source that was
 * streaming from it recovers by itself with fresh SVIDs.
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Source } from '../spiffe/x509-source.js';
import { createEntry, createJoinToken, tempDir, waitFor } from './support/agent-harness.js';
import { call, startTestCa, TD, toPem, type TestCa } from './support/ca-harness.js';
import { AGENT_BIN, requireBuilt, startDaemon, type Daemon } from './support/processes.js';

let t: TestCa;
let dir: string;
let cleanupDir: () => void;
let agent: Daemon | undefined;
let source: X509Source | undefined;

beforeAll(async () => {
  requireBuilt();
  t = await startTestCa();
  ({ dir, cleanup: cleanupDir } = tempDir('brevis-agent-kill-'));
});

afterAll(async () => {
  await source?.close();
  await agent?.stop();
  await t?.cleanup();
  cleanupDir?.();
});

describe('agent killed and restarted', () => {
  it('keeps its identity without a new token, and a workload stream recovers by itself', async () => {
    const f = (n: string) => path.join(dir, n);
    writeFileSync(f('bundle.pem'), toPem(t.roots()));
    const tok = await createJoinToken(t);
    await createEntry(t, { spiffeId: `spiffe://${TD}/survivor`, parentId: tok.agentId, selectors: [`unix:uid:${process.getuid!()}`] });
    const args = ['run', '--server', `127.0.0.1:${t.ca.port}`, '--trust-domain', TD, '--trust-bundle', f('bundle.pem'), '--data-dir', f('agent'), '--socket', f('agent.sock'), '--sync-interval', '1s'];
    agent = await startDaemon(AGENT_BIN, [...args, '--join-token', tok.token], /agent running/);

    source = await X509Source.create({ socketPath: `unix://${f('agent.sock')}`, backoff: { initialMs: 100, maxMs: 500 } });
    const first = source.getX509Svid();
    expect(first.spiffeId.toString()).toBe(`spiffe://${TD}/survivor`);
    let updates = 0;
    source.on('update', () => updates++);

    await agent.stop('SIGKILL');
    expect(agent.proc.signalCode).toBe('SIGKILL');
    // Started again without a join token: it must reuse its stored SVID.
    agent = await startDaemon(AGENT_BIN, args, /agent running/);
    expect(agent.output()).toMatch(/reusing the stored agent SVID/);
    await waitFor(() => updates > 0 && !source!.getX509Svid().chain[0]!.equals(first.chain[0]!), 20_000, 'the workload stream to recover with a fresh SVID');
    expect(source.getX509Svid().spiffeId.toString()).toBe(`spiffe://${TD}/survivor`);

    const agents = await call<object, { agents: Array<{ spiffeId?: string; agentId?: string }> }>(t.admin, 'listAgents', {});
    expect(agents.agents).toHaveLength(1);
    const attestations = (await t.ca.store.listAudit()).filter((r) => r.action === 'attest.join_token');
    expect(attestations.map((r) => r.outcome)).toEqual(['success']); // one attestation, before the kill
  });
});
