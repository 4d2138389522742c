import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { chainAuthorityIds } from '../agent/push/chain-ids.js';
import { AuthorityServiceClient, type AuthorityInfo, type ListAuthoritiesResponse } from '../proto/gen/brevis/ca/v1/authority.js';
import type { WatchChangesResponse } from '../proto/gen/brevis/ca/v1/push.js';
import { readAuditChain } from '../ca/audit/sqlite-audit-chain.js';
import type { SqliteStore } from '../ca/store/sqlite.js';
import { attestAgent, call, startTestCa, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, deleteEntry, tempDir, testLogger, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const uid1000 = new Set(['unix:uid:1000']);

/** A CA and an agent whose poll interval is far too long to explain anything under a second. */
async function setup(): Promise<{ t: TestCa; agent: RunningAgent; agentId: string; authorities: AuthorityServiceClient }> {
  const t = await startTestCa();
  cleanups.push(() => t.cleanup());
  const tmp = tempDir('brevis-push-');
  cleanups.push(tmp.cleanup);
  const { token, agentId } = await createJoinToken(t);
  const agent = await startAgent(agentConfig(t, tmp.dir, { joinToken: token, syncInterval: '1h' }), { logger: testLogger() });
  cleanups.push(() => agent.close());
  await waitFor(() => agent.cache.isReady(), 10_000, 'the first sync');
  const authorities = new AuthorityServiceClient(`unix://${t.ca.adminSocket}`, grpc.credentials.createInsecure());
  cleanups.push(() => authorities.close());
  // The stream is open once the CA counts a subscriber.
  await waitFor(() => t.ca.push.hub.subscribers > 0, 5_000, 'the change stream');
  return { t, agent, agentId, authorities };
}

async function show(c: AuthorityServiceClient): Promise<AuthorityInfo[]> {
  return (await call<object, ListAuthoritiesResponse>(c, 'listAuthorities', {})).authorities;
}

describe('push sync', () => {
  it('delivers entry changes to a connected agent within a second, with a one-hour poll interval', async () => {
    const { t, agent, agentId } = await setup();
    const created = Date.now();
    const e = await createEntry(t, { spiffeId: 'spiffe://example.org/api', parentId: agentId, selectors: ['unix:uid:1000'] });
    await waitFor(() => agent.cache.svidsFor(uid1000).length > 0, 5_000, 'the new entry to reach the agent');
    const addMs = Date.now() - created;
    const deleted = Date.now();
    await deleteEntry(t, e.id);
    await waitFor(() => agent.cache.svidsFor(uid1000).length === 0, 5_000, 'the deleted entry to leave the agent');
    const delMs = Date.now() - deleted;
    console.log(`push sync: entry created -> SVID on the agent in ${addMs} ms; deleted -> gone in ${delMs} ms`);
    expect(addMs).toBeLessThan(1_000);
    expect(delMs).toBeLessThan(1_000);
  });

  it('delivers a prepared root to the agent within a second, and the agent acknowledges it so activation needs no force', async () => {
    const { t, agent, agentId, authorities } = await setup();
    const start = Date.now();
    const p = await t.ca.lifecycle.prepare('x509-root', { caller: 'test' });
    await waitFor(() => agent.cache.bundle().length === 2, 5_000, 'the new root on the agent');
    expect(Date.now() - start).toBeLessThan(1_000);
    const root = await waitFor(async () => {
      const r = (await show(authorities)).find((a) => a.id === p.prepared.id)!;
      return r.acknowledgedAgents === 1 && r;
    }, 5_000, 'the acknowledgement');
    expect(root).toMatchObject({ agents: 1, acknowledgedAgents: 1, unacknowledgedAgents: [] });
    await call(authorities, 'activateAuthority', { kind: 'x509-root', id: p.prepared.id, force: false });
    const ack = (await readAuditChain((t.ca.store as SqliteStore).db)).filter((r) => r.action === 'agent.ack' && r.caller === agentId);
    expect(ack.at(-1)!.detail).toMatch(new RegExp(`^applied bundle sequence ${p.prepared.trustedSinceSeq} `));
  });

  it('refuses activation while a live agent has not acknowledged, naming it', async () => {
    const { t, authorities } = await setup();
    // An agent that fetches (so it counts as seen) but never reports.
    const silent = await attestAgent(t);
    cleanups.push(() => silent.client.close());
    await call(silent.client, 'fetchAuthorizedEntries', {});
    const p = await t.ca.lifecycle.prepare('ssh-user', { caller: 'test' });
    await waitFor(async () => (await show(authorities)).find((a) => a.id === p.prepared.id)!.acknowledgedAgents === 1, 5_000, 'the connected agent to acknowledge');
    const err = await call(authorities, 'activateAuthority', { kind: 'ssh-user', id: p.prepared.id, force: false }).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err?.details).toContain(`1 of 2 agents have not acknowledged`);
    expect(err?.details).toContain(silent.agentId);
    const info = (await show(authorities)).find((a) => a.id === p.prepared.id)!;
    expect(info.unacknowledgedAgents).toEqual([silent.agentId]);
    await call(authorities, 'activateAuthority', { kind: 'ssh-user', id: p.prepared.id, force: true });
  });

  it('replaces every SVID chained to a tainted root at once, agent SVID included, and lets it be revoked when none is outstanding', async () => {
    const { t, agent, agentId, authorities } = await setup();
    await createEntry(t, { spiffeId: 'spiffe://example.org/a', parentId: agentId, selectors: ['unix:uid:1000'] });
    await createEntry(t, { spiffeId: 'spiffe://example.org/b', parentId: agentId, selectors: ['unix:uid:1000'] });
    await waitFor(() => agent.cache.svidsFor(uid1000).length === 2, 5_000, 'two SVIDs');
    const oldRoot = t.ca.lifecycle.snapshot.authorities.find((a) => a.kind === 'x509-root' && a.state === 'active')!;
    const p = await t.ca.lifecycle.prepare('x509-root', { caller: 'test' });
    await waitFor(async () => (await show(authorities)).find((a) => a.id === p.prepared.id)!.acknowledgedAgents === 1, 5_000, 'ack');
    await call(authorities, 'activateAuthority', { kind: 'x509-root', id: p.prepared.id, force: false });
    // Everything the agent holds still chains to the old root (directly, or through the cross-signed intermediate).
    await waitFor(async () => (await show(authorities)).find((a) => a.id === oldRoot.id)!.outstandingCredentials >= 3, 5_000, 'holdings reported');
    const agentSerial = agent.agentSvid().serial;

    const tainted = Date.now();
    await call(authorities, 'taintAuthority', { kind: 'x509-root', id: oldRoot.id });
    const chainsToOld = () => [agent.agentSvid().chain, ...agent.cache.svidsFor(uid1000).map((s) => s.chain)].filter((c) => chainAuthorityIds(c).includes(oldRoot.id)).length;
    await waitFor(() => chainsToOld() === 0 && agent.cache.svidsFor(uid1000).length === 2, 10_000, 'every credential replaced');
    const replacedMs = Date.now() - tainted;
    expect(agent.agentSvid().serial).not.toBe(agentSerial);
    for (const s of agent.cache.svidsFor(uid1000)) expect(chainAuthorityIds(s.chain)).toContain(p.prepared.id);
    const info = await waitFor(async () => {
      const r = (await show(authorities)).find((a) => a.id === oldRoot.id)!;
      return r.outstandingCredentials === 0 && r;
    }, 10_000, 'outstanding to reach zero');
    expect(info.state).toBe('tainted');
    console.log(`taint: agent replaced its credentials in ${replacedMs} ms`);
    const replaced = (await readAuditChain((t.ca.store as SqliteStore).db)).filter((r) => r.action === 'agent.replaced' && r.caller === agentId);
    expect(replaced.at(-1)!.detail).toContain(oldRoot.id);

    await call(authorities, 'revokeAuthority', { kind: 'x509-root', id: oldRoot.id, force: false });
    await waitFor(() => agent.cache.bundle().length === 1, 5_000, 'the revoked root to leave the agent bundle');
    expect(new X509Certificate(agent.cache.bundle()[0]!).subject).toContain(p.prepared.id.slice(0, 8));
    // The agent keeps working with the new root only.
    const e = await createEntry(t, { spiffeId: 'spiffe://example.org/c', parentId: agentId, selectors: ['unix:uid:1000'] });
    await waitFor(() => agent.cache.svidsFor(uid1000).length === 3, 5_000, 'a new entry after the revocation');
    await deleteEntry(t, e.id);
  });

  it('ends the stream of an evicted agent and refuses a report of a bundle the CA never published', async () => {
    const { t } = await setup();
    const a = await attestAgent(t);
    cleanups.push(() => a.client.close());
    const events: string[] = [];
    const stream = (a.client as unknown as { watchChanges(r: object): grpc.ClientReadableStream<WatchChangesResponse> }).watchChanges({});
    const ended = new Promise<grpc.ServiceError | null>((resolve) => {
      stream.on('data', (n: WatchChangesResponse) => events.push(n.reason));
      stream.on('error', (e: grpc.ServiceError) => resolve(e));
      stream.on('end', () => resolve(null));
    });
    await waitFor(() => events.includes('hello'), 5_000, 'hello');
    const bad = await call(a.client, 'reportAgentStatus', { bundleSequence: 10_000, holdings: [] }).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    expect(bad?.code).toBe(grpc.status.INVALID_ARGUMENT);
    await call(t.admin, 'evictAgent', { agentId: a.agentId });
    const err = await ended;
    expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
  });
});
