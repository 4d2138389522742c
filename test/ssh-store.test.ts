import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Db } from '../ca/store/db.js';
import { MIGRATIONS, migrate } from '../ca/store/migrations.js';
import { openSqliteStore, type SqliteStore } from '../ca/store/sqlite.js';
import { StoreError, type AgentRecord, type EntrySsh, type NewEntry } from '../ca/store/store.js';

const SSH: EntrySsh = {
  principals: ['deploy', 'git'],
  ttl: 900,
  extensions: ['permit-pty'],
  forceCommand: 'git-shell -c "$SSH_ORIGINAL_COMMAND"',
  sourceAddress: '10.0.0.0/8',
  hostPrincipals: [],
};

function entry(id: string, over: Partial<NewEntry> = {}): NewEntry {
  return {
    id,
    spiffeId: `spiffe://example.org/w/${id}`,
    parentId: 'spiffe://example.org/brevis/agent/a',
    selectors: [{ type: 'unix', value: 'uid:1000' }],
    x509SvidTtl: 0,
    dnsNames: [],
    hint: '',
    admin: false,
    expiresAt: null,
    ...over,
  };
}

function agent(agentId: string, over: Partial<AgentRecord> = {}): AgentRecord {
  return { agentId, attestationType: 'join_token', serial: '0a', expiresAt: 5_000, selectors: [], banned: false, createdAt: 1_000, lastSeenAt: 1_000, ...over };
}

describe('SQLite store: SSH settings', () => {
  let dir: string;
  let file: string;
  let store: SqliteStore | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-sshstore-'));
    file = path.join(dir, 'ca.sqlite');
  });
  afterEach(async () => {
    await store?.close().catch(() => undefined);
    store = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('keeps the SSH settings of an entry exactly, and leaves them absent on entries without any', async () => {
    store = await openSqliteStore(file);
    const created = await store.createEntry(entry('e1', { ssh: SSH }), 10);
    expect(created.ssh).toEqual(SSH);
    expect(await store.getEntry('e1')).toEqual({ ...entry('e1', { ssh: SSH }), revision: 1, createdAt: 10 });
    await store.createEntry(entry('node', { parentId: 'spiffe://example.org/brevis/server', ssh: { ...SSH, principals: [], extensions: [], forceCommand: null, sourceAddress: null, ttl: 0, hostPrincipals: ['web-1.example.org'] } }), 10);
    expect((await store.listEntriesByParents(['spiffe://example.org/brevis/server']))[0]!.ssh?.hostPrincipals).toEqual(['web-1.example.org']);
    await store.createEntry(entry('plain'), 10);
    const plain = await store.getEntry('plain');
    expect(plain).not.toHaveProperty('ssh');
  });

  it('carries the host names of a join token to whoever consumes it, and keeps them on the agent record', async () => {
    store = await openSqliteStore(file);
    await store.createJoinToken({ id: 't1', secretHash: 'h1', agentId: 'spiffe://example.org/brevis/agent/t1', expiresAt: 2_000, usedAt: null, createdAt: 1_000, sshHostPrincipals: ['web-1.example.org', '10.0.0.7'] });
    await store.createJoinToken({ id: 't2', secretHash: 'h2', agentId: 'spiffe://example.org/brevis/agent/t2', expiresAt: 2_000, usedAt: null, createdAt: 1_000 });
    const used = await store.consumeJoinToken('h1', 1_500);
    expect(used).toMatchObject({ ok: true, token: { sshHostPrincipals: ['web-1.example.org', '10.0.0.7'] } });
    const plain = await store.consumeJoinToken('h2', 1_500);
    expect(plain.ok && plain.token).not.toHaveProperty('sshHostPrincipals');

    const id = 'spiffe://example.org/brevis/agent/t1';
    await store.upsertAgent(agent(id, { sshHostPrincipals: ['web-1.example.org'] }));
    expect((await store.getAgent(id))?.sshHostPrincipals).toEqual(['web-1.example.org']);
    expect((await store.listAgents())[0]?.sshHostPrincipals).toEqual(['web-1.example.org']);
    // Re-attestation replaces them: a new token decides.
    await store.upsertAgent(agent(id));
    expect(await store.getAgent(id)).not.toHaveProperty('sshHostPrincipals');
  });

  it('migrates a database written before SSH support, keeping its rows', async () => {
    const db = await Db.open(file, { busyTimeoutMs: 1000 });
    try {
      await migrate(db, () => 1, MIGRATIONS.filter((m) => m.version === 1));
      await db.exclusive(async (s) => {
        await s.run(`INSERT INTO entries (id, spiffe_id, parent_id, selectors, x509_svid_ttl, dns_names, hint, admin, expires_at, revision, created_at)
          VALUES ('old', 'spiffe://example.org/old', 'spiffe://example.org/brevis/agent/a', '[]', 0, '[]', '', 0, NULL, 1, 5)`);
        await s.run(`INSERT INTO agents (agent_id, attestation_type, serial, expires_at, selectors, banned, created_at, last_seen_at)
          VALUES ('spiffe://example.org/brevis/agent/a', 'join_token', 'ff', 9, '[]', 0, 1, 1)`);
        await s.run(`INSERT INTO join_tokens (id, secret_hash, agent_id, expires_at, used_at, created_at) VALUES ('t', 'h', 'spiffe://example.org/brevis/agent/t', 9999, NULL, 1)`);
      });
    } finally {
      await db.close();
    }
    store = await openSqliteStore(file);
    expect(await store.getEntry('old')).toMatchObject({ id: 'old', spiffeId: 'spiffe://example.org/old' });
    expect(await store.getEntry('old')).not.toHaveProperty('ssh');
    expect(await store.getAgent('spiffe://example.org/brevis/agent/a')).toMatchObject({ serial: 'ff' });
    expect(await store.consumeJoinToken('h', 10)).toMatchObject({ ok: true });
  });

  it('reports malformed stored SSH settings as corrupt instead of returning half an entry', async () => {
    store = await openSqliteStore(file);
    await store.createEntry(entry('e1', { ssh: SSH }), 10);
    await store.close();
    const db = await Db.open(file, { busyTimeoutMs: 1000 });
    try {
      await db.exclusive((s) => s.run(`UPDATE entries SET ssh = '{"principals":"deploy","ttl":0}' WHERE id = 'e1'`));
      await expect(db.exclusive((s) => s.run(`UPDATE entries SET ssh = '[1]' WHERE id = 'e1'`))).rejects.toBeInstanceOf(StoreError);
    } finally {
      await db.close();
    }
    store = await openSqliteStore(file);
    await expect(store.getEntry('e1')).rejects.toMatchObject({ code: 'CORRUPT' });
  });
});
