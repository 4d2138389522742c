/**
 * FetchAuthorizedEntries versions: an agent that sends back the version it
 * applied gets "unchanged" while nothing differs, and the whole state as
 * soon as an entry, the bundle or the authority status changes. A real CA
 * over mTLS with real SQLite; the agent's NodeApi as the client.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeApi, type AuthorizedEntries, type UnchangedEntries } from '../agent/node/node-api.js';
import { NodeChannel } from '../agent/node/channel.js';
import { startAgent } from '../agent/agent.js';
import { createCsr } from '../ca/x509/csr.js';
import { call, startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, testLogger, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function attestedApi(t: TestCa): Promise<{ api: NodeApi; agentId: string }> {
  const ch = new NodeChannel({ address: [`127.0.0.1:${t.ca.port}`], trustDomain: TD, roots: t.roots() });
  cleanups.push(() => ch.close());
  const api = new NodeApi(ch);
  const { token } = await createJoinToken(t);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const res = await api.attestJoinToken(token, await createCsr(privateKey, publicKey));
  ch.setIdentity({ chain: res.svid.certChain.map((c) => Buffer.from(c)), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string });
  return { api, agentId: res.svid.spiffeId };
}

function whole(r: AuthorizedEntries | UnchangedEntries): AuthorizedEntries {
  if (r.unchanged) throw new Error('expected the whole state, got unchanged');
  return r;
}

describe('FetchAuthorizedEntries versions', () => {
  it('answers unchanged for the current version and the whole state after any change', async () => {
    const t = await startTestCa();
    cleanups.push(() => t.cleanup());
    const { api, agentId } = await attestedApi(t);
    const e1 = await createEntry(t, { spiffeId: `spiffe://${TD}/a`, parentId: agentId, selectors: ['unix:uid:1000'] });

    const v1 = whole(await api.fetchAuthorizedEntries());
    expect(v1.entries.map((e) => e.id)).toEqual([e1.id]);
    expect(v1.version).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(await api.fetchAuthorizedEntries(v1.version)).toEqual({ unchanged: true, version: v1.version });
    // A version the CA never gave, or a stale one, gets the whole state.
    expect(whole(await api.fetchAuthorizedEntries('not-a-version')).version).toBe(v1.version);

    // A new entry.
    const e2 = await createEntry(t, { spiffeId: `spiffe://${TD}/b`, parentId: agentId, selectors: ['unix:uid:1001'] });
    const v2 = whole(await api.fetchAuthorizedEntries(v1.version));
    expect(v2.version).not.toBe(v1.version);
    expect(v2.entries.map((e) => e.id).sort()).toEqual([e1.id, e2.id].sort());

    // A deleted entry.
    await call(t.admin, 'deleteEntry', { id: e2.id });
    const v3 = whole(await api.fetchAuthorizedEntries(v2.version));
    expect(v3.entries.map((e) => e.id)).toEqual([e1.id]);
    expect(v3.version).not.toBe(v2.version);

    // A bundle change (a prepared root is published), then an authority taint.
    const oldRoot = t.ca.lifecycle.snapshot.authorities.find((a) => a.kind === 'x509-root' && a.state === 'active')!;
    const p = await t.ca.lifecycle.prepare('x509-root', { caller: 'test' });
    const v4 = whole(await api.fetchAuthorizedEntries(v3.version));
    expect(v4.version).not.toBe(v3.version);
    expect(v4.bundle.x509Authorities).toHaveLength(2);
    expect(await api.fetchAuthorizedEntries(v4.version)).toEqual({ unchanged: true, version: v4.version });
    await t.ca.lifecycle.activate('x509-root', p.prepared.id, { caller: 'test', force: true });
    const afterActivation = whole(await api.fetchAuthorizedEntries());
    await t.ca.lifecycle.taint('x509-root', oldRoot.id, { caller: 'test' });
    const v5 = whole(await api.fetchAuthorizedEntries(afterActivation.version));
    expect(v5.version).not.toBe(afterActivation.version);
    expect(v5.authorities?.taintedIds).toContain(oldRoot.id);

    // Another agent with no entries has a version of its own.
    const other = await attestedApi(t);
    expect(whole(await other.api.fetchAuthorizedEntries()).version).not.toBe(v5.version);
  });

  it('an agent syncing every second picks up new entries while the CA answers unchanged in between', async () => {
    const t = await startTestCa();
    cleanups.push(() => t.cleanup());
    const tmp = tempDir('brevis-agent-');
    cleanups.push(tmp.cleanup);
    const { token, agentId } = await createJoinToken(t);
    await createEntry(t, { spiffeId: `spiffe://${TD}/first`, parentId: agentId, selectors: ['unix:uid:1000'] });
    const agent = await startAgent(agentConfig(t, tmp.dir, { joinToken: token, syncInterval: '1s' }), { logger: testLogger() });
    cleanups.push(() => agent.close());
    const uid1000 = new Set(['unix:uid:1000']);
    await waitFor(() => agent.cache.svidsFor(uid1000)[0], 10_000, 'the first SVID');
    // Several polls with nothing new.
    await new Promise((r) => setTimeout(r, 2500));
    await createEntry(t, { spiffeId: `spiffe://${TD}/second`, parentId: agentId, selectors: ['unix:uid:1000'] });
    await waitFor(() => (agent.cache.svidsFor(uid1000).length === 2 ? true : undefined), 10_000, 'the second SVID');
    expect(agent.cache.svidsFor(uid1000).map((s) => s.spiffeId).sort()).toEqual([`spiffe://${TD}/first`, `spiffe://${TD}/second`]);
  });
});
