import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readAuditChain } from '../ca/audit/sqlite-audit-chain.js';
import { verifyAuditChain } from '../ca/audit/verify-chain.js';
import { CaError } from '../ca/errors.js';
import { newIntermediate, type KeyMaterial } from '../ca/rotation/key-material.js';
import { activeOf, preparedOf, trustedOf, type LifecycleAuthority } from '../ca/rotation/model.js';
import { Rotator, intermediateSchedule } from '../ca/rotation/rotator.js';
import { parseCertificate } from '../ca/x509/parse.js';
import { LTD, openLifecycleRig, opensslVerify, type LifecycleRig } from './support/lifecycle-harness.js';

const expectCode = async (p: Promise<unknown>, code: string, msg?: RegExp) => {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(CaError);
  expect((e as CaError).code).toBe(code);
  if (msg) expect((e as Error).message).toMatch(msg);
};

describe('authority life cycle', () => {
  let rig: LifecycleRig;
  afterEach(async () => {
    await rig?.cleanup();
  });

  const byId = (id: string): LifecycleAuthority => rig.lifecycle.snapshot.authorities.find((a) => a.id === id)!;
  const bundleIds = () => rig.lifecycle.x509.bundle().roots.map((r) => parseCertificate(r).skiHex);
  const auditOk = async () => verifyAuditChain((afterSeq, limit) => readAuditChain(rig.store.db, { afterSeq, limit }));
  const actions = async () => (await readAuditChain(rig.store.db)).filter((r) => r.action.startsWith('authority.')).map((r) => `${r.action} ${r.outcome}`);

  it('creates one active authority of each kind on first start, journaled and audited, and keeps them across a restart', async () => {
    rig = await openLifecycleRig();
    const s = rig.lifecycle.snapshot;
    for (const kind of ['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host'] as const) {
      expect(s.authorities.filter((a) => a.kind === kind && a.state === 'active'), kind).toHaveLength(1);
    }
    expect(s.bundleSequence).toBe(3); // root, then the two SSH CAs entered the trust data
    expect(await actions()).toEqual(['authority.create success', 'authority.create success', 'authority.create success', 'authority.create success']);
    const journal = await rig.ls.journal();
    expect(journal.map((j) => `${j.kind} ${j.action} ${j.status}`)).toEqual(['x509-root create done', 'ssh-user create done', 'ssh-host create done']);
    const before = s.authorities.map((a) => `${a.id}:${a.state}`);
    await rig.reopen();
    expect(rig.lifecycle.snapshot.authorities.map((a) => `${a.id}:${a.state}`)).toEqual(before);
    expect(rig.lifecycle.snapshot.bundleSequence).toBe(3);
    expect(await auditOk()).toMatchObject({ intact: true });
  });

  it('publishes a prepared root in the bundle before it signs, with a new intermediate cross-signed by the active root', async () => {
    rig = await openLifecycleRig();
    const oldRoot = activeOf(rig.lifecycle.snapshot, 'x509-root')!;
    const oldInter = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    const r = await rig.lifecycle.prepare('x509-root', { caller: 'admin:local' });
    const newRoot = r.prepared;
    const newInter = r.alsoPrepared[0]!;
    expect(newRoot.state).toBe('prepared');
    expect(newInter).toMatchObject({ kind: 'x509-intermediate', state: 'prepared', parentId: newRoot.id });
    expect(bundleIds()).toEqual([oldRoot.id, newRoot.id]);
    expect(rig.lifecycle.x509.bundle().sequence).toBe(4);
    expect(newRoot.trustedSinceSeq).toBe(4);
    expect(newInter.trustedSinceSeq).toBe(4);
    // Still signing with the old intermediate.
    expect(rig.lifecycle.x509.signing().record.id).toBe(oldInter.id);
    const cross = rig.lifecycle.snapshot.crossCerts;
    expect(cross).toHaveLength(1);
    expect(cross[0]).toMatchObject({ subjectId: newInter.id, issuerId: oldRoot.id });
    const c = parseCertificate(cross[0]!.der);
    expect(c.skiHex).toBe(newInter.id);
    expect(c.akiHex).toBe(oldRoot.id);
    expect(c.subjectDer.equals(parseCertificate(newInter.publicDer).subjectDer)).toBe(true);
    // A second prepare is refused until this one is activated or rolled back.
    await expectCode(rig.lifecycle.prepare('x509-root', { caller: 'admin:local' }), 'FAILED_PRECONDITION', /already exists/);
  });

  it('serves the new intermediate cross-signed by the old root while the old root is retired, and the direct chain once it is tainted', async () => {
    rig = await openLifecycleRig();
    const oldRoot = activeOf(rig.lifecycle.snapshot, 'x509-root')!;
    const oldInter = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    const oldLeaf = await rig.mint();
    const { prepared: newRoot, alsoPrepared } = await rig.lifecycle.prepare('x509-root', { caller: 'admin:local' });
    const act = await rig.lifecycle.activate('x509-root', newRoot.id, { caller: 'admin:local' });
    expect(act.retiredIds).toEqual([oldRoot.id, oldInter.id]);
    expect(byId(oldRoot.id).state).toBe('retired');
    expect(byId(newRoot.id).state).toBe('active');
    expect(rig.lifecycle.x509.signing().record.id).toBe(alsoPrepared[0]!.id);
    expect(rig.lifecycle.x509.signing().rootId).toBe(oldRoot.id);
    expect(bundleIds()).toEqual([oldRoot.id, newRoot.id]);

    const now = rig.clock.now();
    const crossLeaf = await rig.mint();
    const oldRootDer = byId(oldRoot.id).publicDer;
    const newRootDer = byId(newRoot.id).publicDer;
    // A peer that trusts only the old root validates an SVID issued after the switch...
    expect(opensslVerify(rig.dir, crossLeaf.chain, [oldRootDer], now)).toBe('');
    // ...and so does a peer with the whole bundle, and SVIDs issued before the switch still validate.
    expect(opensslVerify(rig.dir, crossLeaf.chain, [oldRootDer, newRootDer], now)).toBe('');
    expect(opensslVerify(rig.dir, oldLeaf.chain, [oldRootDer, newRootDer], now)).toBe('');

    await rig.lifecycle.taint('x509-root', oldRoot.id, { caller: 'admin:local' });
    expect(rig.lifecycle.x509.signing().rootId).toBe(newRoot.id);
    expect(bundleIds()).toEqual([oldRoot.id, newRoot.id]); // tainted stays trusted until revoked
    const directLeaf = await rig.mint();
    expect(opensslVerify(rig.dir, directLeaf.chain, [newRootDer], now)).toBe('');
    expect(opensslVerify(rig.dir, directLeaf.chain, [oldRootDer], now)).not.toBe('');

    const seq = rig.lifecycle.snapshot.bundleSequence;
    await rig.lifecycle.revoke('x509-root', oldRoot.id, { caller: 'admin:local' });
    expect(bundleIds()).toEqual([newRoot.id]);
    expect(rig.lifecycle.snapshot.bundleSequence).toBe(seq + 1);
    // The old intermediate went with its root.
    expect(rig.lifecycle.snapshot.authorities.filter((a) => a.parentId === oldRoot.id).map((a) => a.state)).toEqual(['revoked']);
    expect(await actions()).toEqual(expect.arrayContaining(['authority.prepare success', 'authority.activate success', 'authority.taint success', 'authority.revoke success']));
    expect(await auditOk()).toMatchObject({ intact: true });
  });

  it('rolls back a prepared root (it leaves the bundle) and an activated root while the previous one is valid', async () => {
    rig = await openLifecycleRig();
    const root1 = activeOf(rig.lifecycle.snapshot, 'x509-root')!;
    const inter1 = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    const p1 = await rig.lifecycle.prepare('x509-root', { caller: 'admin:local' });
    const rb1 = await rig.lifecycle.rollback('x509-root', { caller: 'admin:local' });
    expect(rb1).toEqual({ undone: 'prepare', rolledBackId: p1.prepared.id, activeId: root1.id });
    expect(byId(p1.prepared.id).state).toBe('revoked');
    expect(byId(p1.alsoPrepared[0]!.id).state).toBe('revoked');
    expect(bundleIds()).toEqual([root1.id]);

    const p2 = await rig.lifecycle.prepare('x509-root', { caller: 'admin:local' });
    await rig.lifecycle.activate('x509-root', p2.prepared.id, { caller: 'admin:local' });
    rig.clock.advance(60_000);
    const rb2 = await rig.lifecycle.rollback('x509-root', { caller: 'admin:local' });
    expect(rb2).toEqual({ undone: 'activate', rolledBackId: p2.prepared.id, activeId: root1.id });
    expect(activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!.id).toBe(inter1.id);
    expect(rig.lifecycle.x509.signing().record.id).toBe(inter1.id);
    // The rolled-back root signed for a minute: it stays trusted (retired) until that has expired.
    expect(byId(p2.prepared.id).state).toBe('retired');
    expect(bundleIds()).toContain(p2.prepared.id);
    await expectCode(rig.lifecycle.rollback('x509-root', { caller: 'admin:local' }), 'FAILED_PRECONDITION', /nothing to roll back/);
  });

  it('refuses to roll back to a previous intermediate that has expired', async () => {
    rig = await openLifecycleRig({ intermediateTtlSeconds: 3600 });
    const p = await rig.lifecycle.prepare('x509-intermediate', { caller: 'admin:local' });
    rig.clock.advance(30 * 60_000);
    await rig.lifecycle.activate('x509-intermediate', p.prepared.id, { caller: 'admin:local' });
    rig.clock.advance(40 * 60_000); // the previous intermediate expired meanwhile
    await expectCode(rig.lifecycle.rollback('x509-intermediate', { caller: 'admin:local' }), 'FAILED_PRECONDITION', /has expired/);
  });

  it('refuses what the life cycle does not allow, with messages that say what to do', async () => {
    rig = await openLifecycleRig();
    const root = activeOf(rig.lifecycle.snapshot, 'x509-root')!;
    const inter = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    await expectCode(rig.lifecycle.activate('x509-root', root.id, { caller: 'a' }), 'FAILED_PRECONDITION', /only a prepared authority/);
    await expectCode(rig.lifecycle.taint('x509-root', root.id, { caller: 'a' }), 'FAILED_PRECONDITION', /is active/);
    await expectCode(rig.lifecycle.revoke('x509-intermediate', inter.id, { caller: 'a' }), 'FAILED_PRECONDITION', /is active/);
    await expectCode(rig.lifecycle.activate('x509-root', 'ffff', { caller: 'a' }), 'NOT_FOUND');
    await expectCode(rig.lifecycle.activate('x509-intermediate', root.id, { caller: 'a' }), 'NOT_FOUND');
    await expectCode(rig.lifecycle.rollback('ssh-user', { caller: 'a' }), 'FAILED_PRECONDITION', /nothing to roll back/);
    await expectCode(rig.lifecycle.prepare('x509-root', { caller: 'a', keyType: 'rsa-1024' }), 'INVALID_ARGUMENT', /key type/);
  });

  it('allows at most one active authority per kind at the database level', async () => {
    rig = await openLifecycleRig();
    const p = await rig.lifecycle.prepare('ssh-user', { caller: 'a' });
    await expect(rig.ls.commit({ journal: { startedMs: 0, kind: 'ssh-user', action: 'test', authorityId: p.prepared.id, caller: 't', plan: {}, detail: null }, finishedMs: 0, updates: [{ id: p.prepared.id, state: 'active' }], audit: [] })).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(byId(p.prepared.id).state).toBe('prepared');
  });

  it('refuses to activate a root that live agents have not acknowledged, naming them, unless forced', async () => {
    rig = await openLifecycleRig();
    const nowS = Math.floor(rig.clock.now().getTime() / 1000);
    const agent = (id: string, lastSeenAt: number) => ({ agentId: `spiffe://${LTD}/brevis/agent/${id}`, attestationType: 'join_token' as const, serial: '01', expiresAt: nowS + 3600, selectors: [], banned: false, createdAt: nowS, lastSeenAt });
    await rig.store.upsertAgent(agent('a', nowS));
    await rig.store.upsertAgent(agent('b', nowS));
    await rig.store.upsertAgent(agent('stale', nowS - 7200)); // not seen within the agent-SVID lifetime
    const p = await rig.lifecycle.prepare('x509-root', { caller: 'admin:local' });
    await rig.ls.putAgentStatus({ agentId: agent('a', 0).agentId, bundleSequence: p.prepared.trustedSinceSeq!, holdings: {}, reportedAt: nowS }, () => []);
    await rig.ls.putAgentStatus({ agentId: agent('b', 0).agentId, bundleSequence: p.prepared.trustedSinceSeq! - 1, holdings: {}, reportedAt: nowS }, () => []);
    await expectCode(rig.lifecycle.activate('x509-root', p.prepared.id, { caller: 'admin:local' }), 'FAILED_PRECONDITION', /1 of 2 agents have not acknowledged bundle sequence 4 .*brevis\/agent\/b \(wait for them, or use --force\)/);
    expect(byId(p.prepared.id).state).toBe('prepared');
    const forced = await rig.lifecycle.activate('x509-root', p.prepared.id, { caller: 'admin:local', force: true });
    expect(forced.unacknowledged).toEqual([`spiffe://${LTD}/brevis/agent/b`]);
    const last = (await readAuditChain(rig.store.db)).at(-1)!;
    expect(last.detail).toMatch(/forced past 1 unacknowledged agents/);
  });

  it('refuses to revoke while agents report credentials chained to the authority, unless forced', async () => {
    rig = await openLifecycleRig();
    const nowS = Math.floor(rig.clock.now().getTime() / 1000);
    const oldInter = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    const p = await rig.lifecycle.prepare('x509-intermediate', { caller: 'a' });
    await rig.lifecycle.activate('x509-intermediate', p.prepared.id, { caller: 'a' });
    const agentId = `spiffe://${LTD}/brevis/agent/a`;
    await rig.store.upsertAgent({ agentId, attestationType: 'join_token', serial: '01', expiresAt: nowS + 3600, selectors: [], banned: false, createdAt: nowS, lastSeenAt: nowS });
    await rig.ls.putAgentStatus({ agentId, bundleSequence: 3, holdings: { [oldInter.id]: 2 }, reportedAt: nowS }, () => []);
    await rig.lifecycle.taint('x509-intermediate', oldInter.id, { caller: 'a' });
    await expectCode(rig.lifecycle.revoke('x509-intermediate', oldInter.id, { caller: 'a' }), 'FAILED_PRECONDITION', /2 credentials chained to x509-intermediate .* are still outstanding \(held by spiffe:\/\/rotation\.example\/brevis\/agent\/a\)/);
    await rig.ls.putAgentStatus({ agentId, bundleSequence: 3, holdings: {}, reportedAt: nowS }, () => []);
    const r = await rig.lifecycle.revoke('x509-intermediate', oldInter.id, { caller: 'a' });
    expect(r.authority.state).toBe('revoked');
  });

  it('rotates the intermediate by itself: prepares at half its lifetime, activates at five sixths, drops the old one after its last SVID expired', async () => {
    rig = await openLifecycleRig({ intermediateTtlSeconds: 6 * 3600 });
    const rotator = new Rotator({ lifecycle: rig.lifecycle, clock: rig.clock, logger: (await import('pino')).pino({ level: 'silent' }) });
    const first = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    const { prepareAt, activateAt } = intermediateSchedule(first);
    rig.clock.set(new Date((prepareAt - 10) * 1000));
    expect(await rotator.tick()).toEqual([]);
    rig.clock.set(new Date(prepareAt * 1000));
    const prepared = await rotator.tick();
    expect(prepared).toEqual([expect.stringMatching(/^prepare x509-intermediate [0-9a-f]{40}$/)]);
    const second = preparedOf(rig.lifecycle.snapshot, 'x509-intermediate')[0]!;
    expect(rig.lifecycle.x509.signing().record.id).toBe(first.id);
    rig.clock.set(new Date(activateAt * 1000));
    expect(await rotator.tick()).toEqual([`activate x509-intermediate ${second.id}`]);
    expect(rig.lifecycle.x509.signing().record.id).toBe(second.id);
    const retired = byId(first.id);
    expect(retired.state).toBe('retired');
    // Its last SVID (at most the longest SVID lifetime plus backdate, and never past the intermediate) expires by trustUntil.
    expect(retired.trustUntil).toBe(Math.min(activateAt + 3630, first.notAfter));
    rig.clock.set(new Date((retired.trustUntil! - 1) * 1000));
    await rotator.tick();
    expect(byId(first.id).untrustedAt).toBeNull();
    rig.clock.set(new Date(retired.trustUntil! * 1000));
    await rotator.tick();
    expect(byId(first.id).untrustedAt).toBe(retired.trustUntil);
    const journal = (await rig.ls.journal()).map((j) => `${j.action} ${j.caller}`);
    expect(journal.slice(3, 5)).toEqual(['prepare ca:rotator', 'activate ca:rotator']);
    expect(journal).toContain('expire ca:rotator');
  });

  it('rotates SSH CAs on a configured schedule, waiting for live agents to acknowledge before activating', async () => {
    rig = await openLifecycleRig();
    const logger = (await import('pino')).pino({ level: 'silent' });
    const rotator = new Rotator({ lifecycle: rig.lifecycle, clock: rig.clock, logger, ssh: { everySeconds: 86400, overlapSeconds: 3600 } });
    const oldUser = activeOf(rig.lifecycle.snapshot, 'ssh-user')!;
    rig.clock.advance(86399_000);
    expect((await rotator.tick()).filter((x) => x.includes('ssh'))).toEqual([]);
    rig.clock.advance(1_000);
    const prepared = (await rotator.tick()).filter((x) => x.includes('ssh'));
    expect(prepared).toEqual([expect.stringMatching(/^prepare ssh-user SHA256:/), expect.stringMatching(/^prepare ssh-host SHA256:/)]);
    const newUser = preparedOf(rig.lifecycle.snapshot, 'ssh-user')[0]!;
    // A live agent that has not applied the new trust data holds the activation back.
    const nowS = Math.floor(rig.clock.now().getTime() / 1000);
    const agentId = `spiffe://${LTD}/brevis/agent/slow`;
    await rig.store.upsertAgent({ agentId, attestationType: 'join_token', serial: '01', expiresAt: nowS + 3600, selectors: [], banned: false, createdAt: nowS, lastSeenAt: nowS });
    rig.clock.advance(3600_000);
    await rig.store.touchAgent(agentId, Math.floor(rig.clock.now().getTime() / 1000));
    expect((await rotator.tick()).filter((x) => x.includes('ssh'))).toEqual([]);
    expect(activeOf(rig.lifecycle.snapshot, 'ssh-user')!.id).toBe(oldUser.id);
    await rig.ls.putAgentStatus({ agentId, bundleSequence: rig.lifecycle.snapshot.bundleSequence, holdings: {}, reportedAt: nowS }, () => []);
    expect((await rotator.tick()).filter((x) => x.includes('ssh'))).toEqual([`activate ssh-user ${newUser.id}`, expect.stringMatching(/^activate ssh-host /)]);
    expect(rig.lifecycle.ssh.signing('ssh-user').fingerprint).toBe(newUser.id);
    expect(byId(oldUser.id).state).toBe('retired');
  });

  it('runs the automatic rotation on its own as the clock moves', async () => {
    rig = await openLifecycleRig({ intermediateTtlSeconds: 600 });
    const rotator = new Rotator({ lifecycle: rig.lifecycle, clock: rig.clock, logger: (await import('pino')).pino({ level: 'silent' }) });
    const stop = new AbortController();
    const running = rotator.run(stop.signal);
    const first = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    try {
      for (let i = 0; i < 40 && activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!.id === first.id; i++) {
        await rig.clock.waitForSleepers(1);
        rig.clock.advance(rig.clock.nextDeadline()!.getTime() - rig.clock.now().getTime());
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      stop.abort();
      await running;
    }
    expect(activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!.id).not.toBe(first.id);
    expect(byId(first.id).state).toBe('retired');
  });

  it('rolls back a transition interrupted after its keys were saved: key files removed, journal and audit say so', async () => {
    rig = await openLifecycleRig();
    // What a CA killed between saving the keys and committing leaves behind.
    const root = activeOf(rig.lifecycle.snapshot, 'x509-root')!;
    const rootKey: KeyMaterial = { record: root, signer: await rig.keys.load(root.keyRef) };
    const made = await newIntermediate({ trustDomain: LTD, keyType: 'ec-p256', now: rig.clock.now(), ttlSeconds: 3600, root: rootKey, state: 'prepared' });
    await rig.ls.begin({ startedMs: rig.clock.now().getTime(), kind: 'x509-intermediate', action: 'prepare', authorityId: made.record.id, caller: 'admin:local', plan: { keyRefs: [made.record.keyRef] }, detail: null });
    await rig.keys.save(made.record.keyRef, made.signer);
    const keyFile = path.join(rig.dir, 'keys', `${made.record.keyRef}.key`);
    expect(existsSync(keyFile)).toBe(true);
    await rig.reopen();
    expect(existsSync(keyFile)).toBe(false);
    expect(rig.lifecycle.snapshot.authorities.find((a) => a.id === made.record.id)).toBeUndefined();
    expect(await rig.ls.pending()).toEqual([]);
    const j = (await rig.ls.journal()).at(-1)!;
    expect(j).toMatchObject({ status: 'rolled_back', action: 'prepare', authorityId: made.record.id });
    const rec = (await readAuditChain(rig.store.db)).at(-1)!;
    expect(rec).toMatchObject({ action: 'authority.prepare', outcome: 'failure', caller: 'ca:start' });
    expect(rec.detail).toMatch(/interrupted .* rolled back, removed 1 key file/);
    expect(await auditOk()).toMatchObject({ intact: true });
    // And the kind works normally afterwards.
    await rig.lifecycle.prepare('x509-intermediate', { caller: 'admin:local' });
  });

  it('replaces an intermediate that expired while the CA was down, on the next start', async () => {
    rig = await openLifecycleRig({ intermediateTtlSeconds: 3600 });
    const first = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    rig.clock.advance(2 * 3600_000);
    await rig.reopen();
    const now = activeOf(rig.lifecycle.snapshot, 'x509-intermediate')!;
    expect(now.id).not.toBe(first.id);
    expect(byId(first.id).state).toBe('retired');
    expect(rig.lifecycle.x509.signing().record.id).toBe(now.id);
  });

  it('rotates an SSH CA: the prepared key is trusted before it signs, the retired one until its certificates expire', async () => {
    rig = await openLifecycleRig();
    const old = activeOf(rig.lifecycle.snapshot, 'ssh-user')!;
    const p = await rig.lifecycle.prepare('ssh-user', { caller: 'admin:local', keyType: 'ec-p256' });
    expect(p.prepared.id).toMatch(/^SHA256:/);
    expect(rig.lifecycle.ssh.trustedKeys('ssh-user')).toHaveLength(2);
    expect(rig.lifecycle.ssh.trustedKeys('ssh-user')[1]).toMatch(/^ecdsa-sha2-nistp256 /);
    expect(rig.lifecycle.ssh.trustedKeys('ssh-host')).toHaveLength(1);
    expect(rig.lifecycle.ssh.signing('ssh-user').fingerprint).toBe(old.id);
    await rig.lifecycle.activate('ssh-user', p.prepared.id, { caller: 'admin:local' });
    expect(rig.lifecycle.ssh.signing('ssh-user').fingerprint).toBe(p.prepared.id);
    expect(byId(old.id)).toMatchObject({ state: 'retired', trustUntil: Math.floor(rig.clock.now().getTime() / 1000) + 3600 });
    expect(trustedOf(rig.lifecycle.snapshot, 'ssh-user').map((a) => a.id)).toEqual([old.id, p.prepared.id]);
    rig.clock.advance(3601_000);
    await rig.lifecycle.expireRetired();
    expect(rig.lifecycle.ssh.trustedKeys('ssh-user')).toHaveLength(1);
  });
});
