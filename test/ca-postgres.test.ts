/**
 * One CA server on PostgreSQL (--datastore postgres://...): it attests,
 * mints and keeps its state in the database, not in the data directory.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCaConfig, ConfigError } from '../ca/config/config.js';
import { verifyAuditChain } from '../ca/audit/verify-chain.js';
import { openPostgresStore } from '../ca/store/postgres.js';
import { attestAgent, call, newKey, startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { startTestPostgres, type TestPostgres } from './support/postgres.js';

interface MintResult {
  svid?: { spiffeId: string; certChain: Buffer[]; serial: string };
  statusCode: number;
  statusMessage: string;
}

describe('CA on PostgreSQL', () => {
  let pg: TestPostgres;
  let url: string;
  let t: TestCa;
  let secrets: string;
  let kekFile: string;
  beforeAll(async () => {
    pg = await startTestPostgres();
    url = await pg.createDatabase();
    secrets = mkdtempSync(path.join(os.tmpdir(), 'brevis-kek-'));
    kekFile = path.join(secrets, 'kek');
    writeFileSync(kekFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    t = await startTestCa({ datastore: url, kekFile });
  });
  afterAll(async () => {
    await t?.cleanup();
    await pg?.stop();
    rmSync(secrets, { recursive: true, force: true });
  });

  it('keeps its records in PostgreSQL and creates no SQLite file', async () => {
    expect(existsSync(path.join(t.dir, 'brevis.db'))).toBe(false);
    const kinds = await pg.sql<{ kind: string }>(url, "SELECT kind FROM authorities WHERE state = 'active' ORDER BY kind");
    expect(kinds.map((k) => k.kind)).toEqual(['ssh-host', 'ssh-user', 'x509-intermediate', 'x509-root']);
  });

  it('attests an agent, mints an SVID for its entry, and keeps both across a restart', async () => {
    const agent = await attestAgent(t);
    const entry = await call<object, { entry: { id: string } }>(t.admin, 'createEntry', {
      entry: { id: '', spiffeId: `spiffe://${TD}/pg/web`, parentId: agent.agentId, selectors: [{ type: 'unix', value: 'uid:1000' }], x509SvidTtl: 0, dnsNames: [], hint: '', admin: false, expiresAt: 0, revision: 0, createdAt: 0 },
    });
    const k = await newKey();
    const res = await call<object, { results: MintResult[] }>(agent.client, 'batchMintX509Svid', { params: [{ entryId: entry.entry.id, csr: k.csr }] });
    expect(res.results[0]?.svid?.spiffeId).toBe(`spiffe://${TD}/pg/web`);
    agent.client.close();

    const rootBefore = t.roots()[0]!;
    await t.restart();
    expect(t.roots()[0]!.equals(rootBefore)).toBe(true);
    const listed = await call<object, { entries: { id: string }[] }>(t.admin, 'listEntries', {});
    expect(listed.entries.map((e) => e.id)).toContain(entry.entry.id);
    const rows = await pg.sql<{ agent_id: string }>(url, 'SELECT agent_id FROM agents');
    expect(rows.map((r) => r.agent_id)).toContain(agent.agentId);
  });

  it('writes one intact audit chain that names the mint', async () => {
    const store = await openPostgresStore(url);
    try {
      const verdict = await verifyAuditChain((afterSeq, limit) => store.readAuditChain({ afterSeq, limit }));
      expect(verdict).toMatchObject({ intact: true });
      const actions = (await store.listAudit()).map((r) => r.action);
      expect(actions).toContain('x509.mint');
      expect(actions).toContain('authority.create');
    } finally {
      await store.close();
    }
  });

  it('keeps the CA keys in the database, so a second server with the same KEK signs with the same authorities', async () => {
    expect(readdirSync(path.join(t.dir, 'keys'))).toEqual([]);
    const refs = await pg.sql<{ ref: string }>(url, 'SELECT ref FROM ca_keys ORDER BY ref');
    const authorities = await pg.sql<{ key_ref: string }>(url, 'SELECT key_ref FROM authorities ORDER BY key_ref');
    expect(refs.map((r) => r.ref)).toEqual(authorities.map((a) => a.key_ref));

    const second = await startTestCa({ datastore: url, kekFile });
    try {
      expect(second.roots().map((r) => r.toString('hex'))).toEqual(t.roots().map((r) => r.toString('hex')));
      expect(second.ca.authority.signing().record.id).toBe(t.ca.authority.signing().record.id);
      const agent = await attestAgent(second);
      expect(agent.chain[1]!.equals(t.ca.authority.signing().record.publicDer)).toBe(true);
      agent.client.close();
    } finally {
      await second.cleanup();
    }
  });

  it('refuses to start a server whose KEK differs from the one that sealed the keys, without revealing either', async () => {
    const otherKek = path.join(secrets, 'other-kek');
    const hex = randomBytes(32).toString('hex');
    writeFileSync(otherKek, `${hex}\n`, { mode: 0o600 });
    const err = (await startTestCa({ datastore: url, kekFile: otherKek }).then(
      async (x) => {
        await x.cleanup();
        return new Error('started');
      },
      (e: unknown) => e,
    )) as Error & { code?: string };
    expect(err.message).toMatch(/cannot decrypt CA key .*wrong key-encryption key/);
    expect(err.message).not.toContain(hex);
  });

  it('is backed up with pg_dump and restored with pg_restore into a new database that another server carries on with', async () => {
    const dump = path.join(secrets, 'brevis.dump');
    await pg.client('pg_dump', ['--format=custom', `--file=${dump}`, url]);
    const restored = await pg.createDatabase();
    await pg.client('pg_restore', ['--no-owner', `--dbname=${restored}`, dump]);
    const again = await startTestCa({ datastore: restored, kekFile });
    try {
      expect(again.roots().map((r) => r.toString('hex'))).toEqual(t.roots().map((r) => r.toString('hex')));
      const listed = await call<object, { entries: { spiffeId: string }[] }>(again.admin, 'listEntries', {});
      expect(listed.entries.map((e) => e.spiffeId)).toContain(`spiffe://${TD}/pg/web`);
      const agent = await attestAgent(again);
      agent.client.close();
      const store = await openPostgresStore(restored);
      try {
        // The restored chain continues: records from before the dump, and the new attestation after them.
        const verdict = await verifyAuditChain((afterSeq, limit) => store.readAuditChain({ afterSeq, limit }));
        expect(verdict).toMatchObject({ intact: true });
        expect((await store.listAudit()).some((r) => r.action === 'attest.join_token' && r.spiffeId === agent.agentId)).toBe(true);
        await expect(pg.sql(restored, "UPDATE audit SET detail = 'x' WHERE seq = 1")).rejects.toThrow(/append-only/);
      } finally {
        await store.close();
      }
    } finally {
      await again.cleanup();
    }
  });

  it('refuses a PostgreSQL datastore without a key-encryption key given to every server', () => {
    expect(() => buildCaConfig({ dataDir: '/tmp/x', trustDomain: TD, listen: '127.0.0.1:0', datastore: url }, {})).toThrow(ConfigError);
    expect(() => buildCaConfig({ dataDir: '/tmp/x', trustDomain: TD, listen: '127.0.0.1:0', datastore: url }, {})).toThrow(/same key-encryption key/);
    expect(() => buildCaConfig({ dataDir: '/tmp/x', trustDomain: TD, listen: '127.0.0.1:0', datastore: 'mysql://h/db' }, {})).toThrow(/datastore must be/);
    expect(buildCaConfig({ dataDir: '/tmp/x', trustDomain: TD, listen: '127.0.0.1:0' }, {}).datastore).toEqual({ kind: 'sqlite' });
  });
});
