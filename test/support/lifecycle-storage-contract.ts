/**
 * The authority life cycle's storage (snapshot, journal, transitions in one
 * transaction, agent reports) must behave the same on every backend:
 * registered by test/store-contract.test.ts for SQLite and PostgreSQL.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../ca/audit/verify-chain.js';
import { NEXT_SEQUENCE, type NewJournalEntry } from '../../ca/rotation/lifecycle-store.js';
import type { LifecycleAuthority } from '../../ca/rotation/model.js';
import type { LifecycleStorage } from '../../ca/store/datastore.js';
import type { Store } from '../../ca/store/store.js';
import { audit, type StoreHarness } from './store-contract.js';

export interface LifecycleHarness extends StoreHarness {
  lifecycle(store: Store): LifecycleStorage;
}

function authority(id: string, over: Partial<LifecycleAuthority> = {}): LifecycleAuthority {
  return {
    id,
    kind: 'x509-intermediate',
    state: 'active',
    publicDer: Buffer.from(`der-${id}`),
    parentId: 'root',
    keyRef: `x509-intermediate-${id}`,
    notBefore: 1_000,
    notAfter: 9_000,
    createdAt: 1_000,
    trustedSinceSeq: 1,
    retiredAt: null,
    trustUntil: null,
    untrustedAt: null,
    ...over,
  };
}

const journal = (over: Partial<NewJournalEntry> = {}): NewJournalEntry => ({
  startedMs: 5_000,
  kind: 'x509-intermediate',
  action: 'prepare',
  authorityId: 'i1',
  caller: 'test',
  plan: { keyRefs: ['x509-intermediate-i1'] },
  detail: null,
  ...over,
});

export function describeLifecycleStorageContract(name: string, h: LifecycleHarness): void {
  describe(`${name} life-cycle storage contract`, () => {
    let store: Store;
    let ls: LifecycleStorage;
    beforeAll(() => h.setup());
    afterAll(() => h.teardown());
    beforeEach(async () => {
      await h.fresh();
      store = await h.open();
      ls = h.lifecycle(store);
    });
    afterEach(() => store.close());

    it('starts empty, at bundle sequence 0', async () => {
      expect(await ls.snapshot()).toEqual({ authorities: [], crossCerts: [], bundleSequence: 0 });
      expect(await ls.pending()).toEqual([]);
    });

    it('commits inserts, cross certificates, the bundle bump, the journal entry and the audit records together', async () => {
      const seq = await ls.commit({
        journal: journal({ action: 'create' }),
        finishedMs: 6_000,
        inserts: [
          authority('root', { kind: 'x509-root', parentId: null, keyRef: 'x509-root-root', trustedSinceSeq: NEXT_SEQUENCE }),
          authority('i1', { notBefore: 1_000, trustedSinceSeq: NEXT_SEQUENCE }),
        ],
        crossCerts: [{ subjectId: 'i1', issuerId: 'old', der: Buffer.from('cross'), notAfter: 8_000, createdAt: 1_000 }],
        bumpBundle: true,
        audit: [audit(1, { action: 'authority.create' })],
      });
      expect(seq).toBe(1);
      const snap = await ls.snapshot();
      expect(snap.bundleSequence).toBe(1);
      expect(snap.authorities.map((a) => [a.id, a.trustedSinceSeq])).toEqual([
        ['root', 1],
        ['i1', 1],
      ]);
      expect(snap.authorities[1]).toEqual(authority('i1', { trustedSinceSeq: 1 }));
      expect(snap.crossCerts).toEqual([{ subjectId: 'i1', issuerId: 'old', der: Buffer.from('cross'), notAfter: 8_000, createdAt: 1_000 }]);
      expect(await ls.journal()).toMatchObject([{ seq: 1, action: 'create', status: 'done', startedMs: 5_000, finishedMs: 6_000, plan: { keyRefs: ['x509-intermediate-i1'] } }]);
      expect((await store.listAudit()).map((r) => r.action)).toEqual(['authority.create']);
    });

    it('lists authorities by notBefore, then in the order they were inserted', async () => {
      await ls.commit({ journal: journal(), finishedMs: 1, inserts: [authority('z', { notBefore: 2_000, state: 'prepared' })], audit: [] });
      await ls.commit({ journal: journal(), finishedMs: 1, inserts: [authority('b', { notBefore: 1_000, state: 'retired' })], audit: [] });
      await ls.commit({ journal: journal(), finishedMs: 1, inserts: [authority('a', { notBefore: 1_000, state: 'prepared' })], audit: [] });
      expect((await ls.snapshot()).authorities.map((a) => a.id)).toEqual(['b', 'a', 'z']);
    });

    it('finishes a pending entry exactly once, and marks an abandoned one rolled back with its audit record', async () => {
      const first = await ls.begin(journal());
      const second = await ls.begin(journal({ authorityId: 'i2' }));
      expect((await ls.pending()).map((j) => [j.seq, j.status])).toEqual([
        [first, 'pending'],
        [second, 'pending'],
      ]);
      await ls.commit({ pendingSeq: first, journal: journal({ detail: 'done now' }), finishedMs: 7_000, inserts: [authority('i1', { state: 'prepared' })], audit: [] });
      await expect(ls.commit({ pendingSeq: first, journal: journal(), finishedMs: 7_001, audit: [] })).rejects.toMatchObject({ code: 'CONFLICT' });
      await ls.abandon(second, 8_000, 'interrupted', [audit(2, { action: 'authority.prepare', outcome: 'failure' })]);
      expect(await ls.pending()).toEqual([]);
      expect((await ls.journal()).map((j) => [j.seq, j.status, j.detail])).toEqual([
        [first, 'done', 'done now'],
        [second, 'rolled_back', 'interrupted'],
      ]);
      expect((await store.listAudit()).map((r) => r.outcome)).toEqual(['failure']);
    });

    it('applies updates before inserts, so the active authority can be replaced in one commit', async () => {
      await ls.commit({ journal: journal(), finishedMs: 1, inserts: [authority('old')], audit: [] });
      await ls.commit({
        journal: journal({ action: 'activate' }),
        finishedMs: 2,
        updates: [{ id: 'old', state: 'retired', retiredAt: 3_000, trustUntil: 4_000 }],
        inserts: [authority('new')],
        audit: [],
      });
      const snap = await ls.snapshot();
      expect(snap.authorities.map((a) => [a.id, a.state, a.retiredAt, a.trustUntil])).toEqual([
        ['old', 'retired', 3_000, 4_000],
        ['new', 'active', null, null],
      ]);
    });

    it('commits nothing when any part of a transition fails: two active authorities, an unknown one, a failing hook', async () => {
      await ls.commit({ journal: journal(), finishedMs: 1, inserts: [authority('a1')], audit: [] });
      const before = await ls.snapshot();
      await expect(ls.commit({ journal: journal(), finishedMs: 2, inserts: [authority('a2')], bumpBundle: true, audit: [audit(1)] })).rejects.toMatchObject({ code: 'CONFLICT' });
      await expect(ls.commit({ journal: journal(), finishedMs: 2, updates: [{ id: 'nope', state: 'retired' }], bumpBundle: true, audit: [audit(2)] })).rejects.toMatchObject({
        code: 'CONFLICT',
      });
      await expect(
        ls.commit({
          journal: journal(),
          finishedMs: 2,
          updates: [{ id: 'a1', state: 'tainted' }],
          bumpBundle: true,
          audit: [audit(3)],
          beforeCommit: () => {
            throw new Error('crash test');
          },
        }),
      ).rejects.toThrow('crash test');
      expect(await ls.snapshot()).toEqual(before);
      expect(await ls.journal()).toHaveLength(1);
      expect(await store.listAudit()).toEqual([]);
    });

    it('finds the newest finished entry of a kind among given actions, and returns the last entries oldest first', async () => {
      for (const [kind, action] of [
        ['x509-intermediate', 'activate'],
        ['x509-root', 'activate'],
        ['x509-intermediate', 'rollback'],
        ['x509-intermediate', 'taint'],
      ] as const) {
        await ls.commit({ journal: journal({ kind, action }), finishedMs: 1, audit: [] });
      }
      await ls.begin(journal({ action: 'activate' }));
      expect((await ls.lastDone('x509-intermediate', ['activate', 'rollback']))?.action).toBe('rollback');
      expect((await ls.lastDone('x509-intermediate', ['activate']))?.seq).toBe(1);
      expect(await ls.lastDone('ssh-user', ['activate'])).toBeUndefined();
      expect((await ls.journal(2)).map((j) => j.seq)).toEqual([4, 5]);
    });

    it('keeps what each agent reported, hands the previous report to the audit builder, and chains those records', async () => {
      const seen: Array<number | undefined> = [];
      const report = (bundleSequence: number, holdings: Record<string, number>) =>
        ls.putAgentStatus({ agentId: 'spiffe://example.org/agent/a', bundleSequence, holdings, reportedAt: 100 + bundleSequence }, (previous) => {
          seen.push(previous?.bundleSequence);
          return [audit(bundleSequence, { action: 'agent.ack' })];
        });
      await report(1, { i1: 2 });
      await report(2, { i1: 1, i2: 1 });
      expect(seen).toEqual([undefined, 1]);
      expect([...(await ls.agentStatuses()).values()]).toEqual([{ agentId: 'spiffe://example.org/agent/a', bundleSequence: 2, holdings: { i1: 1, i2: 1 }, reportedAt: 102 }]);
      expect(await verifyAuditChain((afterSeq, limit) => h.readChain(store, { afterSeq, limit }))).toMatchObject({ intact: true, count: 2 });
    });
  });
}
