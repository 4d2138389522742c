/**
 * Three CA servers (in this process) on one throwaway PostgreSQL: one
 * bootstrap, one chain of audit records, transitions serialized across
 * servers, and changes made on one server adopted by the others within a
 * few seconds. (Killing servers is in ha-failover.test.ts, with processes.)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../ca/audit/verify-chain.js';
import type { ChangeReason } from '../ca/push/change-hub.js';
import { openPostgresStore } from '../ca/store/postgres.js';
import { attestAgent, call, newKey, startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { createEntry, waitFor } from './support/agent-harness.js';
import { startTestPostgres, type TestPostgres } from './support/postgres.js';

interface MintResult {
  svid?: { spiffeId: string; certChain: Buffer[]; serial: string };
  statusCode: number;
  statusMessage: string;
}

describe('three CA servers on one PostgreSQL database', () => {
  let pg: TestPostgres;
  let url: string;
  let secrets: string;
  let kekFile: string;
  let cas: TestCa[] = [];

  beforeAll(async () => {
    pg = await startTestPostgres();
    url = await pg.createDatabase();
    secrets = mkdtempSync(path.join(os.tmpdir(), 'brevis-ha-'));
    kekFile = path.join(secrets, 'kek');
    writeFileSync(kekFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    // All three at the same moment, on an empty database.
    cas = await Promise.all([0, 1, 2].map(() => startTestCa({ datastore: url, kekFile })));
  });
  afterAll(async () => {
    for (const t of cas) await t.cleanup();
    await pg?.stop();
    rmSync(secrets, { recursive: true, force: true });
  });

  it('bootstraps the authorities once when all three start together, and all serve the same ones', async () => {
    const rows = await pg.sql<{ kind: string; n: string }>(url, 'SELECT kind, count(*) AS n FROM authorities GROUP BY kind ORDER BY kind');
    expect(rows.map((r) => [r.kind, Number(r.n)])).toEqual([
      ['ssh-host', 1],
      ['ssh-user', 1],
      ['x509-intermediate', 1],
      ['x509-root', 1],
    ]);
    const roots = cas.map((t) => t.roots().map((r) => r.toString('hex')).join());
    expect(new Set(roots).size).toBe(1);
    expect(new Set(cas.map((t) => t.ca.authority.signing().record.id)).size).toBe(1);
  });

  it('lets an agent attested on one server mint on another, and keeps one intact audit chain across all three', async () => {
    const agent = await attestAgent(cas[0]!);
    agent.client.close();
    const entry = await createEntry(cas[1]!, { spiffeId: `spiffe://${TD}/ha/web`, parentId: agent.agentId, selectors: ['unix:uid:1000'] });
    // The agent's SVID works on every server: each mints for it, concurrently.
    const { nodeClient } = await import('./support/ca-harness.js');
    const results = await Promise.all(
      cas.flatMap((t) =>
        Array.from({ length: 5 }, async () => {
          const c = nodeClient(t, { chain: agent.chain, key: agent.key });
          try {
            const k = await newKey();
            return await call<object, { results: MintResult[] }>(c, 'batchMintX509Svid', { params: [{ entryId: entry.id, csr: k.csr }] });
          } finally {
            c.close();
          }
        }),
      ),
    );
    const serials = results.map((r) => r.results[0]?.svid?.serial);
    expect(serials.every((s) => typeof s === 'string' && s.length > 0)).toBe(true);
    expect(new Set(serials).size).toBe(15);

    const store = await openPostgresStore(url);
    try {
      const verdict = await verifyAuditChain((afterSeq, limit) => store.readAuditChain({ afterSeq, limit }));
      expect(verdict).toMatchObject({ intact: true });
      const mints = (await store.listAudit()).filter((r) => r.action === 'x509.mint' && r.outcome === 'success');
      expect(mints.map((r) => r.serial).sort()).toEqual(expect.arrayContaining([...serials].sort() as string[]));
    } finally {
      await store.close();
    }
  });

  it('runs a transition asked of two servers at once only once: the second sees the first', async () => {
    const [a, b] = [cas[0]!.ca.lifecycle, cas[1]!.ca.lifecycle];
    const outcomes = await Promise.allSettled([a.prepare('x509-intermediate', { caller: 'test' }), b.prepare('x509-intermediate', { caller: 'test' })]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const refused = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(String(refused.reason.message)).toMatch(/a prepared x509-intermediate already exists/);
    const prepared = await pg.sql(url, "SELECT id FROM authorities WHERE kind = 'x509-intermediate' AND state = 'prepared'");
    expect(prepared).toHaveLength(1);
  });

  it('moves every server to an intermediate activated on one of them within a few seconds', async () => {
    const [prepared] = await pg.sql<{ id: string }>(url, "SELECT id FROM authorities WHERE kind = 'x509-intermediate' AND state = 'prepared'");
    const started = Date.now();
    await cas[2]!.ca.lifecycle.activate('x509-intermediate', prepared!.id, { caller: 'test' });
    for (const t of cas) await waitFor(() => t.ca.authority.signing().record.id === prepared!.id, 5000, 'the new intermediate on every server');
    expect(Date.now() - started).toBeLessThan(5000);
    // And each mints with it.
    const agent = await attestAgent(cas[0]!);
    expect(agent.chain[1]!.equals(cas[0]!.ca.authority.signing().record.publicDer)).toBe(true);
    agent.client.close();
  });

  it('brings a bundle change made on one server to the others, which tell their connected agents', async () => {
    const heard: ChangeReason[] = [];
    const off = cas[1]!.ca.push.hub.subscribe((n) => heard.push(n.reason));
    try {
      const before = cas[1]!.ca.authority.bundle().sequence;
      const res = await cas[0]!.ca.lifecycle.prepare('x509-root', { caller: 'test' });
      await waitFor(() => cas[1]!.ca.authority.bundle().sequence > before, 5000, 'the new bundle on server 2');
      expect(cas[1]!.ca.authority.bundle().roots.map((r) => r.toString('hex'))).toContain(res.prepared.publicDer.toString('hex'));
      await waitFor(() => heard.includes('bundle'), 2000, 'a bundle notice on server 2');
    } finally {
      off();
    }
  });

  it('relays an entry change made through one server to the agents connected to the others', async () => {
    const heard: ChangeReason[][] = [[], [], []];
    const offs = cas.map((t, i) => t.ca.push.hub.subscribe((n) => heard[i]!.push(n.reason)));
    try {
      await createEntry(cas[2]!, { spiffeId: `spiffe://${TD}/ha/relayed`, parentId: `spiffe://${TD}/brevis/agent/x`, selectors: ['unix:uid:1'] });
      await waitFor(() => heard[0]!.includes('entries') && heard[1]!.includes('entries'), 3000, 'entry notices on servers 1 and 2');
      // The origin publishes once, and does not hear its own relay back.
      await new Promise((r) => setTimeout(r, 300));
      expect(heard[2]!.filter((r) => r === 'entries')).toHaveLength(1);
    } finally {
      for (const off of offs) off();
    }
  });

  it('rolls back a transition a dead server left pending, removing its key, when the next server starts', async () => {
    const keyRef = 'x509-intermediate-deadbeef';
    await pg.sql(url, "INSERT INTO ca_keys (ref, sealed, created_at) VALUES ($1, '\\x4252565300', 0)", [keyRef]);
    const [pending] = await pg.sql<{ seq: number }>(
      url,
      `INSERT INTO authority_journal (started_ms, kind, action, authority_id, caller, status, plan, detail)
       VALUES (0, 'x509-intermediate', 'prepare', 'deadbeef', 'ca:rotator', 'pending', $1, 'dead server') RETURNING seq`,
      [JSON.stringify({ keyRefs: [keyRef], createdIds: ['deadbeef'] })],
    );
    const fourth = await startTestCa({ datastore: url, kekFile });
    try {
      const [row] = await pg.sql<{ status: string }>(url, 'SELECT status FROM authority_journal WHERE seq = $1', [pending!.seq]);
      expect(row!.status).toBe('rolled_back');
      expect(await pg.sql(url, 'SELECT ref FROM ca_keys WHERE ref = $1', [keyRef])).toEqual([]);
      const store = await openPostgresStore(url);
      try {
        const audit = await store.listAudit();
        expect(audit.some((r) => r.action === 'authority.prepare' && r.outcome === 'failure' && /interrupted/.test(r.detail ?? ''))).toBe(true);
        expect(await verifyAuditChain((afterSeq, limit) => store.readAuditChain({ afterSeq, limit }))).toMatchObject({ intact: true });
      } finally {
        await store.close();
      }
    } finally {
      await fourth.cleanup();
    }
  });

  it('runs the automatic rotation on exactly one server', async () => {
    const holders = await pg.sql<{ application_name: string }>(
      url,
      `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = 3 AND l.granted`,
      [0x42525653],
    );
    expect(holders).toHaveLength(1);
    expect(holders[0]!.application_name).toMatch(/^brevis-ca:singleton:rotation:\d+$/);
  });
});
