/**
 * The behaviour every Store must have, as one suite run against each
 * implementation (test/store-contract.test.ts runs it on SQLite and on
 * PostgreSQL). What only one backend has (SQLite file modes and WAL,
 * PostgreSQL locks across servers) is tested in that backend's own file.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GENESIS_HASH, auditRecordHash, type ChainedAuditRecord } from '../../ca/audit/audit-hash.js';
import { verifyAuditChain } from '../../ca/audit/verify-chain.js';
import type { Migration } from '../../ca/store/migrations.js';
import {
  StoreError,
  type AgentRecord,
  type AuditRecord,
  type AuthorityRecord,
  type EntrySsh,
  type JoinTokenRecord,
  type NewEntry,
  type Store,
} from '../../ca/store/store.js';

export interface StoreHarness {
  /** Once per file (start a server). */
  setup(): Promise<void>;
  /** Once per file, after every store was closed. */
  teardown(): Promise<void>;
  /** Before each test: a new, empty database. */
  fresh(): Promise<void>;
  /** A store on the current database; each call opens another connection (another "process"). */
  open(): Promise<Store>;
  /** The audit records with their hashes, oldest first. */
  readChain(store: Store, options?: { afterSeq?: number; limit?: number }): Promise<ChainedAuditRecord[]>;
  /** Runs one statement directly on the database, as a client other than the store. Rejects with the database's own error. */
  raw(sql: string): Promise<unknown[]>;
  /** Edits the database as an attacker with full access would: the append-only triggers dropped first. */
  tamper(...statements: string[]): Promise<void>;
  /** The backend's migrations, in order. */
  migrations: readonly Migration[];
}

async function expectStoreError(p: Promise<unknown>, code: StoreError['code']): Promise<StoreError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreError);
  expect((err as StoreError).code).toBe(code);
  return err as StoreError;
}

export function entry(id: string, over: Partial<NewEntry> = {}): NewEntry {
  return {
    id,
    spiffeId: `spiffe://example.org/workload/${id}`,
    parentId: 'spiffe://example.org/spire/agent/join_token/t1',
    selectors: [{ type: 'unix', value: 'uid:1000' }],
    x509SvidTtl: 0,
    dnsNames: [],
    hint: '',
    admin: false,
    expiresAt: null,
    ...over,
  };
}

function token(id: string, over: Partial<JoinTokenRecord> = {}): JoinTokenRecord {
  return { id, secretHash: `hash-${id}`, agentId: `spiffe://example.org/spire/agent/join_token/${id}`, expiresAt: 2_000, usedAt: null, createdAt: 1_000, ...over };
}

function agent(agentId: string, over: Partial<AgentRecord> = {}): AgentRecord {
  return {
    agentId,
    attestationType: 'join_token',
    serial: '0a1b',
    expiresAt: 5_000,
    selectors: [{ type: 'join_token', value: 't1' }],
    banned: false,
    createdAt: 1_000,
    lastSeenAt: 1_000,
    ...over,
  };
}

export function audit(i: number, over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    timeMs: 1_700_000_000_000 + i,
    caller: 'admin:uid=0',
    action: 'x509.mint',
    spiffeId: `spiffe://example.org/w/${i}`,
    serial: i.toString(16),
    notAfter: 1_700_003_600,
    outcome: 'success',
    detail: i % 2 ? null : `entry e${i}`,
    ...over,
  };
}

function authority(id: string, over: Partial<AuthorityRecord> = {}): AuthorityRecord {
  return {
    id,
    kind: 'x509-root',
    state: 'active',
    publicDer: Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]),
    parentId: null,
    keyRef: `${id}.key`,
    notBefore: 1_000,
    notAfter: 9_000,
    createdAt: 1_000,
    ...over,
  };
}

const SSH: EntrySsh = {
  principals: ['deploy', 'git'],
  ttl: 900,
  extensions: ['permit-pty'],
  forceCommand: 'git-shell -c "$SSH_ORIGINAL_COMMAND"',
  sourceAddress: '10.0.0.0/8',
  hostPrincipals: [],
};

/** Registers the whole contract for one backend. */
export function describeStoreContract(name: string, h: StoreHarness): void {
  describe(`${name} store contract`, () => {
    const opened: Store[] = [];
    async function open(): Promise<Store> {
      const s = await h.open();
      opened.push(s);
      return s;
    }
    const verify = (s: Store) => verifyAuditChain((afterSeq, limit) => h.readChain(s, { afterSeq, limit }));

    beforeAll(() => h.setup());
    afterAll(() => h.teardown());
    beforeEach(() => h.fresh());
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close().catch(() => undefined);
    });

    describe('schema', () => {
      it('records every applied migration, in order', async () => {
        await open();
        const rows = (await h.raw('SELECT version FROM schema_migrations ORDER BY version')) as { version: number | string }[];
        expect(rows.map((r) => Number(r.version))).toEqual(h.migrations.map((m) => m.version));
      });

      it('refuses a database whose schema is newer than the code, saying so', async () => {
        await (await open()).close();
        const next = h.migrations[h.migrations.length - 1]!.version + 1;
        await h.raw(`INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (${next}, 'from the future', 0)`);
        const err = await expectStoreError(h.open(), 'CORRUPT');
        expect(err.message).toContain(`schema version ${next} is newer`);
      });

      it('opens an up-to-date database again without applying anything', async () => {
        await (await open()).close();
        await (await open()).close();
        const rows = (await h.raw('SELECT count(*) AS n FROM schema_migrations')) as { n: number | string }[];
        expect(Number(rows[0]!.n)).toBe(h.migrations.length);
      });
    });

    describe('registration entries', () => {
      it('creates an entry at revision 1 with selectors sorted by type then value and deduplicated', async () => {
        const store = await open();
        const created = await store.createEntry(
          entry('e1', {
            selectors: [
              { type: 'unix', value: 'uid:1000' },
              { type: 'k8s', value: 'ns:prod' },
              { type: 'unix', value: 'gid:10' },
              { type: 'k8s', value: 'ns:prod' },
            ],
            dnsNames: ['b.example.org', 'a.example.org'],
            x509SvidTtl: 600,
            hint: 'db',
            admin: true,
            expiresAt: 99_999,
          }),
          1_234,
        );
        const expected = {
          id: 'e1',
          spiffeId: 'spiffe://example.org/workload/e1',
          parentId: 'spiffe://example.org/spire/agent/join_token/t1',
          selectors: [
            { type: 'k8s', value: 'ns:prod' },
            { type: 'unix', value: 'gid:10' },
            { type: 'unix', value: 'uid:1000' },
          ],
          x509SvidTtl: 600,
          dnsNames: ['b.example.org', 'a.example.org'],
          hint: 'db',
          admin: true,
          expiresAt: 99_999,
          revision: 1,
          createdAt: 1_234,
        };
        expect(created).toEqual(expected);
        expect(await store.getEntry('e1')).toEqual(expected);
      });

      it('returns undefined for an unknown entry', async () => {
        const store = await open();
        expect(await store.getEntry('nope')).toBeUndefined();
      });

      it('refuses a second entry with the same id as a conflict and keeps the first', async () => {
        const store = await open();
        await store.createEntry(entry('dup', { hint: 'first' }), 1);
        const err = await expectStoreError(store.createEntry(entry('dup', { hint: 'second' }), 2), 'CONFLICT');
        expect(err.message).toContain('dup');
        expect((await store.getEntry('dup'))?.hint).toBe('first');
      });

      it('refuses a fractional number where whole seconds belong', async () => {
        const store = await open();
        await expectStoreError(store.createEntry(entry('frac', { x509SvidTtl: 1.5 }), 1), 'CONFLICT');
        expect(await store.getEntry('frac')).toBeUndefined();
      });

      it('lists all entries in code-unit order of their ids, and the entries of any of several parents', async () => {
        const store = await open();
        await store.createEntry(entry('c', { parentId: 'spiffe://example.org/agent/a' }), 1);
        await store.createEntry(entry('a', { parentId: 'spiffe://example.org/agent/b' }), 1);
        await store.createEntry(entry('b', { parentId: 'spiffe://example.org/agent/c' }), 1);
        // Upper case sorts before lower case in code-unit order, whatever the database's locale says.
        await store.createEntry(entry('B', { parentId: 'spiffe://example.org/agent/d' }), 1);
        expect((await store.listEntries()).map((e) => e.id)).toEqual(['B', 'a', 'b', 'c']);
        const some = await store.listEntriesByParents(['spiffe://example.org/agent/a', 'spiffe://example.org/agent/c', 'unknown']);
        expect(some.map((e) => e.id)).toEqual(['b', 'c']);
        expect(await store.listEntriesByParents([])).toEqual([]);
      });

      it('deletes an entry and says whether it existed', async () => {
        const store = await open();
        await store.createEntry(entry('gone'), 1);
        expect(await store.deleteEntry('gone')).toBe(true);
        expect(await store.getEntry('gone')).toBeUndefined();
        expect(await store.deleteEntry('gone')).toBe(false);
      });

      it('keeps the SSH settings of an entry exactly, and leaves them absent on entries without any', async () => {
        const store = await open();
        const created = await store.createEntry(entry('e1', { ssh: SSH }), 10);
        expect(created.ssh).toEqual(SSH);
        expect(await store.getEntry('e1')).toEqual({ ...entry('e1', { ssh: SSH }), revision: 1, createdAt: 10 });
        const node = { ...SSH, principals: [], extensions: [], forceCommand: null, sourceAddress: null, ttl: 0, hostPrincipals: ['web-1.example.org'] };
        await store.createEntry(entry('node', { parentId: 'spiffe://example.org/brevis/server', ssh: node }), 10);
        expect((await store.listEntriesByParents(['spiffe://example.org/brevis/server']))[0]!.ssh?.hostPrincipals).toEqual(['web-1.example.org']);
        await store.createEntry(entry('plain'), 10);
        expect(await store.getEntry('plain')).not.toHaveProperty('ssh');
      });

      it('reports malformed stored SSH settings as corrupt instead of returning half an entry', async () => {
        const store = await open();
        await store.createEntry(entry('e1', { ssh: SSH }), 10);
        await h.raw(`UPDATE entries SET ssh = '{"principals":"deploy","ttl":0}' WHERE id = 'e1'`);
        await expect(h.raw(`UPDATE entries SET ssh = '[1]' WHERE id = 'e1'`)).rejects.toThrow();
        await expect(store.getEntry('e1')).rejects.toMatchObject({ code: 'CORRUPT' });
      });
    });

    describe('join tokens', () => {
      it('consumes a valid token once, returning it marked used, then reports it used', async () => {
        const store = await open();
        await store.createJoinToken(token('t1'));
        expect(await store.consumeJoinToken('hash-t1', 1_500)).toEqual({ ok: true, token: token('t1', { usedAt: 1_500 }) });
        expect(await store.consumeJoinToken('hash-t1', 1_501)).toEqual({ ok: false, reason: 'used' });
      });

      it('reports an unknown secret as unknown', async () => {
        const store = await open();
        await store.createJoinToken(token('t1'));
        expect(await store.consumeJoinToken('hash-other', 1_500)).toEqual({ ok: false, reason: 'unknown' });
      });

      it('treats a token as expired from its expiry second on, and leaves it unused', async () => {
        const store = await open();
        await store.createJoinToken(token('t1', { expiresAt: 2_000 }));
        expect(await store.consumeJoinToken('hash-t1', 2_000)).toEqual({ ok: false, reason: 'expired' });
        expect(await store.consumeJoinToken('hash-t1', 1_999)).toMatchObject({ ok: true });
      });

      it('refuses two tokens with the same secret hash as a conflict', async () => {
        const store = await open();
        await store.createJoinToken(token('t1', { secretHash: 'same' }));
        await expectStoreError(store.createJoinToken(token('t2', { secretHash: 'same' })), 'CONFLICT');
      });

      it('lets exactly one of 20 concurrent consumers of the same token succeed', async () => {
        const store = await open();
        await store.createJoinToken(token('t1'));
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.consumeJoinToken('hash-t1', 1_100 + i)));
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect(results.filter((r) => !r.ok && r.reason === 'used')).toHaveLength(19);
      });

      it('lets exactly one of two stores on the same database consume a token', async () => {
        const a = await open();
        const b = await open();
        await a.createJoinToken(token('t1'));
        const results = await Promise.all([
          ...Array.from({ length: 10 }, () => a.consumeJoinToken('hash-t1', 1_100)),
          ...Array.from({ length: 10 }, () => b.consumeJoinToken('hash-t1', 1_100)),
        ]);
        expect(results.filter((r) => r.ok)).toHaveLength(1);
      });

      it('carries the host names of a join token to whoever consumes it, and keeps them on the agent record', async () => {
        const store = await open();
        await store.createJoinToken({ ...token('t1', { secretHash: 'h1' }), sshHostPrincipals: ['web-1.example.org', '10.0.0.7'] });
        await store.createJoinToken(token('t2', { secretHash: 'h2' }));
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
    });

    describe('agents', () => {
      it('stores an agent with sorted selectors and lists agents by id', async () => {
        const store = await open();
        await store.upsertAgent(agent('spiffe://example.org/agent/b'));
        const selectors = [
          { type: 'x509pop', value: 'subject:cn:b' },
          { type: 'x509pop', value: 'subject:cn:a' },
        ];
        await store.upsertAgent(agent('spiffe://example.org/agent/a', { attestationType: 'x509pop', selectors }));
        expect(await store.getAgent('spiffe://example.org/agent/a')).toEqual(
          agent('spiffe://example.org/agent/a', { attestationType: 'x509pop', selectors: [selectors[1]!, selectors[0]!] }),
        );
        expect((await store.listAgents()).map((x) => x.agentId)).toEqual(['spiffe://example.org/agent/a', 'spiffe://example.org/agent/b']);
        expect(await store.getAgent('spiffe://example.org/agent/none')).toBeUndefined();
      });

      it('replaces an agent record on re-attestation', async () => {
        const store = await open();
        const id = 'spiffe://example.org/agent/a';
        await store.upsertAgent(agent(id));
        await store.upsertAgent(agent(id, { serial: 'ff', expiresAt: 8_000, lastSeenAt: 3_000 }));
        expect(await store.getAgent(id)).toEqual(agent(id, { serial: 'ff', expiresAt: 8_000, lastSeenAt: 3_000 }));
      });

      it('keeps a ban through a later upsert, even one from another connection', async () => {
        const store = await open();
        const other = await open();
        const id = 'spiffe://example.org/agent/a';
        await store.upsertAgent(agent(id));
        expect(await store.banAgent(id)).toBe(true);
        await other.upsertAgent(agent(id, { banned: false, serial: 'ff' }));
        expect(await store.getAgent(id)).toMatchObject({ banned: true, serial: 'ff' });
        expect(await store.banAgent('spiffe://example.org/agent/none')).toBe(false);
      });

      it('pins a renewed SVID serial and records when the agent was seen', async () => {
        const store = await open();
        const id = 'spiffe://example.org/agent/a';
        await store.upsertAgent(agent(id));
        expect(await store.updateAgentSvid(id, 'beef', 9_000, 4_000)).toBe(true);
        expect(await store.getAgent(id)).toMatchObject({ serial: 'beef', expiresAt: 9_000, lastSeenAt: 4_000 });
        await store.touchAgent(id, 4_500);
        expect((await store.getAgent(id))?.lastSeenAt).toBe(4_500);
        expect(await store.updateAgentSvid('spiffe://example.org/agent/none', 'beef', 9_000, 4_000)).toBe(false);
        await store.touchAgent('spiffe://example.org/agent/none', 4_500);
        expect(await store.getAgent('spiffe://example.org/agent/none')).toBeUndefined();
      });

      it('deletes an agent and says whether it existed', async () => {
        const store = await open();
        const id = 'spiffe://example.org/agent/a';
        await store.upsertAgent(agent(id));
        expect(await store.deleteAgent(id)).toBe(true);
        expect(await store.getAgent(id)).toBeUndefined();
        expect(await store.deleteAgent(id)).toBe(false);
      });
    });

    describe('audit', () => {
      it('appends records with increasing sequence numbers and lists them oldest first', async () => {
        const store = await open();
        const failed = audit(2, { outcome: 'failure', detail: 'policy', spiffeId: null, serial: null, notAfter: null });
        await store.appendAudit([audit(1), failed]);
        await store.appendAudit([audit(3, { seq: 1 })]); // a caller's seq is ignored
        expect(await store.listAudit()).toEqual([
          { ...audit(1), seq: 1 },
          { ...failed, seq: 2 },
          { ...audit(3), seq: 3 },
        ]);
      });

      it('filters audit records by time and limits how many are returned', async () => {
        const store = await open();
        await store.appendAudit([audit(1), audit(2), audit(3), audit(4)]);
        expect((await store.listAudit({ sinceMs: audit(2).timeMs })).map((r) => r.serial)).toEqual(['2', '3', '4']);
        expect((await store.listAudit({ limit: 2 })).map((r) => r.serial)).toEqual(['1', '2']);
        expect((await store.listAudit({ sinceMs: audit(3).timeMs, limit: 1 })).map((r) => r.serial)).toEqual(['3']);
      });

      it('appends 1000 records in one call', async () => {
        const store = await open();
        await store.appendAudit(Array.from({ length: 1000 }, (_, i) => audit(i)));
        const listed = await store.listAudit();
        expect(listed).toHaveLength(1000);
        expect(listed[999]).toEqual({ ...audit(999), seq: 1000 });
      });

      it('writes none of a batch when one record in it is refused', async () => {
        const store = await open();
        const bad = audit(3, { outcome: 'maybe' as AuditRecord['outcome'] });
        await expectStoreError(store.appendAudit([audit(1), audit(2), bad]), 'CONFLICT');
        expect(await store.listAudit()).toEqual([]);
        await store.appendAudit([audit(4)]);
        expect((await store.listAudit()).map((r) => r.seq)).toEqual([1]);
      });

      it('keeps a concurrent write out of a batch that is rolled back', async () => {
        const store = await open();
        const bad = audit(300, { outcome: 'maybe' as AuditRecord['outcome'] });
        const batch = [...Array.from({ length: 299 }, (_, i) => audit(i)), bad];
        const [failed, created] = await Promise.allSettled([store.appendAudit(batch), store.createEntry(entry('during'), 1), store.setMeta('during', 'yes')]);
        expect(failed.status).toBe('rejected');
        expect(created.status).toBe('fulfilled');
        expect(await store.getEntry('during')).toBeDefined();
        expect(await store.getMeta('during')).toBe('yes');
        expect(await store.listAudit()).toEqual([]);
      });

      it('refuses UPDATE and DELETE of audit rows at the database level', async () => {
        const store = await open();
        await store.appendAudit([audit(1)]);
        await expect(h.raw("UPDATE audit SET outcome = 'failure'")).rejects.toThrow(/append-only/);
        await expect(h.raw("UPDATE audit SET hash = NULL WHERE seq = 1")).rejects.toThrow(/append-only/);
        await expect(h.raw('DELETE FROM audit')).rejects.toThrow(/append-only/);
        expect((await store.listAudit()).map((r) => r.outcome)).toEqual(['success']);
      });
    });

    describe('audit hash chain', () => {
      async function filled(n: number): Promise<Store> {
        const s = await open();
        await s.appendAudit(Array.from({ length: n }, (_, i) => audit(i + 1)));
        return s;
      }

      it('chains each record to the one before it, starting from the genesis hash', async () => {
        const store = await filled(5);
        const chain = await h.readChain(store);
        expect(chain.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
        expect(chain[0]!.prevHash).toBe(GENESIS_HASH);
        for (let i = 1; i < chain.length; i++) expect(chain[i]!.prevHash).toBe(chain[i - 1]!.hash);
        for (const r of chain) expect(r.hash).toBe(auditRecordHash(r.seq, r, r.prevHash));
        expect(await verify(store)).toEqual({ intact: true, count: 5, headSeq: 5, headHash: chain[4]!.hash });
      });

      it('chains concurrent appends correctly (they serialize)', async () => {
        const store = await open();
        await Promise.all(Array.from({ length: 40 }, (_, i) => store.appendAudit([audit(2 * i), audit(2 * i + 1)])));
        expect(await verify(store)).toMatchObject({ intact: true, count: 80 });
      });

      it('chains appends from three connections to the same database into one chain', async () => {
        const stores = [await open(), await open(), await open()];
        await Promise.all(Array.from({ length: 30 }, (_, i) => stores[i % 3]!.appendAudit([audit(i), audit(100 + i)])));
        expect(await verify(stores[0]!)).toMatchObject({ intact: true, count: 60 });
      });

      it('verifies an empty trail as intact with zero records', async () => {
        const store = await open();
        expect(await verify(store)).toEqual({ intact: true, count: 0, headSeq: 0, headHash: GENESIS_HASH });
      });

      it('detects an edited record and names it', async () => {
        const store = await filled(6);
        await h.tamper("UPDATE audit SET detail = 'nothing to see' WHERE seq = 4");
        const v = await verify(store);
        expect(v).toMatchObject({ intact: false, brokenSeq: 4, count: 3 });
        expect(v.intact === false && v.reason).toMatch(/edited/);
      });

      it('detects an edited record whose hash was recomputed, at the record after it', async () => {
        const store = await filled(6);
        const row = (await h.readChain(store)).find((r) => r.seq === 4)!;
        const forged = auditRecordHash(4, { ...row, outcome: 'failure' }, row.prevHash);
        await h.tamper(`UPDATE audit SET outcome = 'failure', hash = '${forged}' WHERE seq = 4`);
        expect(await verify(store)).toMatchObject({ intact: false, brokenSeq: 5, count: 4 });
      });

      it('detects a deleted record at the record that followed it', async () => {
        const store = await filled(6);
        await h.tamper('DELETE FROM audit WHERE seq = 3');
        const v = await verify(store);
        expect(v).toMatchObject({ intact: false, brokenSeq: 4, count: 2 });
        expect(v.intact === false && v.reason).toMatch(/deleted.*records 3\.\.3 are missing/);
      });

      it('detects reordered records (positions swapped)', async () => {
        const store = await filled(6);
        await h.tamper('UPDATE audit SET seq = 100 WHERE seq = 2', 'UPDATE audit SET seq = 2 WHERE seq = 5', 'UPDATE audit SET seq = 5 WHERE seq = 100');
        const v = await verify(store);
        expect(v).toMatchObject({ intact: false, brokenSeq: 2, count: 1 });
        expect(v.intact === false && v.reason).toMatch(/reordered/);
      });

      it('never reuses a sequence number after the newest records were deleted, and flags the gap', async () => {
        await (await filled(4)).close();
        await h.tamper('DELETE FROM audit WHERE seq >= 3');
        const store = await open();
        await store.appendAudit([audit(9)]);
        expect((await h.readChain(store)).map((r) => r.seq)).toEqual([1, 2, 5]);
        const v = await verify(store);
        expect(v).toMatchObject({ intact: false, brokenSeq: 5, count: 2 });
        expect(v.intact === false && v.reason).toMatch(/records 3\.\.4 are missing/);
      });

      it('chains records written before the chain existed when the database is opened', async () => {
        await (await filled(3)).close();
        await h.tamper('UPDATE audit SET prev_hash = NULL, hash = NULL');
        const store = await open();
        await store.appendAudit([audit(4)]);
        expect(await verify(store)).toMatchObject({ intact: true, count: 4 });
      });
    });

    describe('authorities', () => {
      it('stores authorities, lists them by kind, and replaces one put again', async () => {
        const store = await open();
        await store.putAuthority(authority('root1'));
        await store.putAuthority(authority('int1', { kind: 'x509-intermediate', parentId: 'root1', notBefore: 2_000 }));
        await store.putAuthority(authority('ssh1', { kind: 'ssh-user', publicDer: Buffer.from('ssh-blob') }));
        expect(await store.listAuthorities('x509-intermediate')).toEqual([authority('int1', { kind: 'x509-intermediate', parentId: 'root1', notBefore: 2_000 })]);
        const all = await store.listAuthorities();
        expect(all.map((a) => a.id).sort()).toEqual(['int1', 'root1', 'ssh1']);
        expect(Buffer.isBuffer(all.find((a) => a.id === 'ssh1')?.publicDer)).toBe(true);
        expect(all.find((a) => a.id === 'ssh1')?.publicDer.toString()).toBe('ssh-blob');

        await store.putAuthority(authority('root1', { state: 'retired', keyRef: 'other.key' }));
        expect(await store.listAuthorities('x509-root')).toEqual([authority('root1', { state: 'retired', keyRef: 'other.key' })]);
      });

      it('changes an authority state and says whether it existed', async () => {
        const store = await open();
        await store.putAuthority(authority('root1', { state: 'prepared' }));
        expect(await store.setAuthorityState('root1', 'active')).toBe(true);
        expect((await store.listAuthorities())[0]?.state).toBe('active');
        expect(await store.setAuthorityState('none', 'active')).toBe(false);
      });
    });

    describe('meta', () => {
      it('sets, overwrites and reads small values', async () => {
        const store = await open();
        expect(await store.getMeta('bundle_sequence')).toBeUndefined();
        await store.setMeta('bundle_sequence', '1');
        await store.setMeta('bundle_sequence', '2');
        expect(await store.getMeta('bundle_sequence')).toBe('2');
      });
    });

    describe('open and close', () => {
      it('keeps everything across close and reopen', async () => {
        const first = await open();
        await first.createEntry(entry('e1'), 10);
        await first.createJoinToken(token('t1'));
        await first.consumeJoinToken('hash-t1', 1_500);
        await first.upsertAgent(agent('spiffe://example.org/agent/a'));
        await first.appendAudit([audit(1)]);
        await first.putAuthority(authority('root1'));
        await first.setMeta('k', 'v');
        await first.close();

        const second = await open();
        expect(await second.getEntry('e1')).toEqual({ ...entry('e1'), revision: 1, createdAt: 10 });
        expect(await second.consumeJoinToken('hash-t1', 1_600)).toEqual({ ok: false, reason: 'used' });
        expect(await second.getAgent('spiffe://example.org/agent/a')).toEqual(agent('spiffe://example.org/agent/a'));
        expect(await second.listAudit()).toEqual([{ ...audit(1), seq: 1 }]);
        expect(await second.listAuthorities()).toEqual([authority('root1')]);
        expect(await second.getMeta('k')).toBe('v');
      });

      it('finishes work already started when closed, then refuses calls as closed', async () => {
        const store = await open();
        const pending = store.setMeta('k', 'v');
        const closing = store.close();
        await pending;
        await closing;
        await store.close(); // idempotent
        await expectStoreError(store.getMeta('k'), 'CLOSED');
        await expectStoreError(store.listEntriesByParents([]), 'CLOSED');
        await expectStoreError(store.appendAudit([audit(1)]), 'CLOSED');
        const reopened = await open();
        expect(await reopened.getMeta('k')).toBe('v');
      });
    });
  });
}
