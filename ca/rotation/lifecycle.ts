/**
 * The authority life cycle: prepare, activate, roll back, taint and revoke
 * X.509 roots and intermediates and SSH user and host CAs, with every
 * transition journaled and committed in one transaction (plan-changes.ts
 * decides what each one changes). Transitions run one at a time. After
 * each, the issuing views (X509Authority, SshAuthority) take the new state
 * and listeners hear about it (server identity, push to agents).
 *
 * Crash safety: a transition that creates key files first writes a
 * pending journal entry naming them, then saves them, then commits the
 * records and finishes the entry in one transaction. On start, a pending
 * entry (the CA stopped in between) is rolled back: its key files are
 * deleted and the entry is marked rolled back, with an audit record.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../spiffe/clock.js';
import { epochSeconds } from '../../spiffe/clock.js';
import { X509Authority } from '../authority/x509-authority.js';
import { CaError } from '../errors.js';
import type { CaKeyStore } from '../keys/keystore.js';
import type { KeyType } from '../keys/keytype.js';
import type { LocalSigner } from '../keys/signer.js';
import { SshAuthority } from '../ssh/ssh-authority.js';
import type { AuditRecord, AuthorityKind, Store } from '../store/store.js';
import type { CrashHook } from '../crash-hook.js';
import { acknowledgements, outstanding, type FleetFacts } from './fleet.js';
import { NEXT_SEQUENCE, type AgentStatus, type SqliteLifecycleStore, type TransitionCommit, type TransitionPlan } from './lifecycle-store.js';
import { crossSign, newIntermediate, newRoot, newSshCa, type KeyMaterial, type SshCaKeyType } from './key-material.js';
import { activeOf, expiredRetirees, isTrusted, preparedOf, type LifecycleAuthority, type LifecycleSnapshot } from './model.js';
import { changedKind, snapshotsDiffer } from '../ha/snapshot-diff.js';
import { activationChanges, revokeChanges, rollbackChanges, taintChanges, type ChangeSet, type RetirePolicy } from './plan-changes.js';

export interface AuthorityLifecycleOptions {
  /** SQLite or PostgreSQL (ca/store/datastore.ts). */
  lifecycleStore: Pick<SqliteLifecycleStore, keyof SqliteLifecycleStore>;
  store: Pick<Store, 'listAgents'>;
  /** Key files, or the shared database (ca/keys/postgres-keystore.ts). */
  keys: CaKeyStore;
  clock: Clock;
  trustDomain: string;
  keyType: KeyType;
  sshKeyType: SshCaKeyType;
  rootTtlSeconds: number;
  intermediateTtlSeconds: number;
  retire: RetirePolicy;
  /** Agents seen within this many seconds must acknowledge a new root or SSH CA before it activates. */
  agentSvidTtlSeconds: number;
  logger: Logger;
  crashHook?: CrashHook;
  /** Told about each transition's outcome (metrics). */
  onTransition?: (kind: AuthorityKind, action: string, outcome: 'success' | 'failure') => void;
  /**
   * Several CA servers on one database: runs `fn` holding the cluster-wide
   * transition lock (PostgresLifecycleStore.withTransitionLock). Start-up
   * recovery, bootstrap and every transition run under it, transitions
   * after catching up with what the other servers committed.
   */
  clusterLock?: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** Why listeners are told: the trust data changed, or only who signs. */
export type LifecycleChange = { bundleChanged: boolean; action: string; kind: AuthorityKind };

export interface PrepareResult {
  prepared: LifecycleAuthority;
  /** A root's new intermediate. */
  alsoPrepared: LifecycleAuthority[];
}

export interface ActivateResult {
  activated: LifecycleAuthority;
  retiredIds: string[];
  /** With force: who had not acknowledged. */
  unacknowledged: string[];
}

export interface RollbackResult {
  undone: 'prepare' | 'activate';
  rolledBackId: string;
  activeId: string;
}

/** Caller names of the CA's own transitions. */
export const ROTATOR_CALLER = 'ca:rotator';
export const STARTUP_CALLER = 'ca:start';

export class AuthorityLifecycle {
  readonly x509: X509Authority;
  readonly ssh: SshAuthority;
  #snapshot!: LifecycleSnapshot;
  readonly #signers = new Map<string, LocalSigner>();
  readonly #listeners = new Set<(c: LifecycleChange) => void>();
  #tail: Promise<unknown> = Promise.resolve();
  #serverChainIds: () => readonly string[] = () => [];
  /** False while bootstrapping: the views take the state once every kind has an active authority. */
  #ready = false;

  private constructor(private readonly o: AuthorityLifecycleOptions) {
    this.x509 = new X509Authority(o.trustDomain);
    this.ssh = new SshAuthority(o.trustDomain);
  }

  /** Recovers interrupted transitions, creates what a first start needs, and loads the state. */
  static async open(o: AuthorityLifecycleOptions): Promise<AuthorityLifecycle> {
    const l = new AuthorityLifecycle(o);
    // Under the cluster lock: a pending entry then belongs to a server that
    // died, and two servers starting on an empty database bootstrap once.
    await l.#clusterLocked(async () => {
      await l.#recover();
      l.#snapshot = await o.lifecycleStore.snapshot();
      await l.#bootstrap();
    });
    l.#ready = true;
    await l.#reload();
    return l;
  }

  /** The state as last committed. */
  get snapshot(): LifecycleSnapshot {
    return this.#snapshot;
  }

  /** Listens for committed transitions. Returns an unsubscribe function. */
  onChange(listener: (c: LifecycleChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The authority ids in the CA's own serving SVID chain (counted as outstanding credentials). */
  setServerChainIds(fn: () => readonly string[]): void {
    this.#serverChainIds = fn;
  }

  /** Stores an agent's report (ReportAgentStatus) with the audit records made from the previous one. */
  putAgentStatus(status: AgentStatus, audit: (previous: AgentStatus | undefined) => AuditRecord[]): Promise<void> {
    return this.o.lifecycleStore.putAgentStatus(status, audit);
  }

  /** What the fleet acknowledged and holds, for `authority show` and the checks below. */
  async fleet(): Promise<FleetFacts> {
    const [agents, statuses] = await Promise.all([this.o.store.listAgents(), this.o.lifecycleStore.agentStatuses()]);
    return {
      agents,
      statuses,
      nowSeconds: epochSeconds(this.o.clock.now()),
      windowSeconds: this.o.agentSvidTtlSeconds,
      serverChainIds: this.#serverChainIds(),
    };
  }

  // --- transitions ---

  prepare(kind: AuthorityKind, p: { caller: string; keyType?: string }): Promise<PrepareResult> {
    return this.#serial(kind, 'prepare', async () => {
      const s = this.#snapshot;
      const now = this.o.clock.now();
      const existing = kind === 'x509-intermediate' ? preparedOf(s, kind, activeOf(s, 'x509-root')?.id) : preparedOf(s, kind);
      if (existing.length > 0) {
        throw new CaError('FAILED_PRECONDITION', `a prepared ${kind} already exists (${existing[0]!.id}): activate it or roll it back first`);
      }
      const made = await this.#newMaterial(kind, 'prepared', now, p.keyType);
      const [main] = made.keys;
      await this.#createTransition(made, {
        kind,
        action: 'prepare',
        caller: p.caller,
        now,
        bumpBundle: kind !== 'x509-intermediate',
        detail: made.detail,
      });
      return { prepared: this.#find(main!.record.id)!, alsoPrepared: made.keys.slice(1).map((k) => this.#find(k.record.id)!) };
    });
  }

  activate(kind: AuthorityKind, id: string, p: { caller: string; force?: boolean }): Promise<ActivateResult> {
    return this.#serial(kind, 'activate', async () => {
      const target = this.#require(kind, id);
      if (target.state !== 'prepared') throw new CaError('FAILED_PRECONDITION', `${kind} ${id} is ${target.state}: only a prepared authority can be activated`);
      let unacknowledged: string[] = [];
      // Intermediates add no trust material: their root is trusted already.
      if (kind !== 'x509-intermediate') {
        const acks = acknowledgements(target, await this.fleet());
        if (acks.missing.length > 0 && !p.force) {
          const list = acks.missing.slice(0, 10).join(', ') + (acks.missing.length > 10 ? `, and ${acks.missing.length - 10} more` : '');
          throw new CaError(
            'FAILED_PRECONDITION',
            `${acks.missing.length} of ${acks.agents} agents have not acknowledged bundle sequence ${target.trustedSinceSeq} containing ${kind} ${id}: ${list} (wait for them, or use --force)`,
          );
        }
        unacknowledged = acks.missing;
      }
      const nowS = epochSeconds(this.o.clock.now());
      const changes = activationChanges(this.#snapshot, target, nowS, this.o.retire);
      const forced = unacknowledged.length > 0 ? `; forced past ${unacknowledged.length} unacknowledged agents` : '';
      await this.#commitChanges(kind, 'activate', p.caller, changes, `${changes.detail}${forced}`);
      return { activated: this.#find(id)!, retiredIds: changes.plan.previousIds ?? [], unacknowledged };
    });
  }

  rollback(kind: AuthorityKind, p: { caller: string }): Promise<RollbackResult> {
    return this.#serial(kind, 'rollback', async () => {
      const last = await this.o.lifecycleStore.lastDone(kind, ['activate', 'rollback']);
      const changes = rollbackChanges(this.#snapshot, kind, last, epochSeconds(this.o.clock.now()), this.o.retire);
      await this.#commitChanges(kind, 'rollback', p.caller, changes, changes.detail);
      const undone = changes.plan.undone as RollbackResult['undone'];
      const activeId = activeOf(this.#snapshot, kind)?.id ?? '';
      return { undone, rolledBackId: String(changes.plan.rolledBackId), activeId };
    });
  }

  taint(kind: AuthorityKind, id: string, p: { caller: string }): Promise<LifecycleAuthority> {
    return this.#serial(kind, 'taint', async () => {
      const changes = taintChanges(this.#require(kind, id));
      await this.#commitChanges(kind, 'taint', p.caller, changes, changes.detail);
      return this.#find(id)!;
    });
  }

  revoke(kind: AuthorityKind, id: string, p: { caller: string; force?: boolean }): Promise<{ authority: LifecycleAuthority; outstanding: number }> {
    return this.#serial(kind, 'revoke', async () => {
      const target = this.#require(kind, id);
      const out = outstanding(id, await this.fleet());
      if (out.credentials > 0 && !p.force && target.state !== 'revoked') {
        const who = out.agents.slice(0, 10).join(', ');
        throw new CaError(
          'FAILED_PRECONDITION',
          `${out.credentials} credentials chained to ${kind} ${id} are still outstanding${who ? ` (held by ${who})` : ''}: taint it so they are replaced, wait, or use --force`,
        );
      }
      const changes = revokeChanges(this.#snapshot, target, epochSeconds(this.o.clock.now()));
      const forced = out.credentials > 0 ? `; forced with ${out.credentials} credentials outstanding` : '';
      await this.#commitChanges(kind, 'revoke', p.caller, changes, `${changes.detail}${forced}`);
      return { authority: this.#find(id)!, outstanding: out.credentials };
    });
  }

  /**
   * Runs `fn` as the only transition in progress (it may call the
   * transitions of this class). Used by the automatic rotation.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#queued(() =>
      this.#clusterLocked(async () => {
        if (this.o.clusterLock) await this.#catchUp();
        return fn();
      }),
    );
  }

  /**
   * Several CA servers on one database: loads what the others committed
   * and, when anything changed, applies it (issuing views, listeners).
   * Resolves true when something changed.
   */
  refresh(): Promise<boolean> {
    return this.#queued(() => this.#catchUp());
  }

  /**
   * Rolls back transitions a server left pending when it died. Run by the
   * server that takes over the singleton work; safe under the cluster lock,
   * which a live server holds for the whole of a transition.
   */
  recoverInterrupted(): Promise<void> {
    return this.exclusive(() => this.#recover());
  }

  /**
   * Applies time-driven transitions: retired authorities whose last
   * credential expired leave trust. Returns how many left. (The
   * intermediate schedule lives in rotator.ts.)
   */
  expireRetired(caller = ROTATOR_CALLER): Promise<number> {
    return this.exclusive(() => this.#expireRetired(caller));
  }

  /** ensureUsableIntermediate as a transition of its own (the automatic rotation's safety net). */
  repairIntermediate(caller = ROTATOR_CALLER): Promise<boolean> {
    // Checked first outside the queue: a usable intermediate is the common case, and not a transition.
    if (this.#intermediateUsable()) return Promise.resolve(false);
    return this.#serial('x509-intermediate', 'create', () => this.#ensureUsableIntermediate(caller));
  }

  /** An active intermediate under the active root that signs for at least another minute. */
  #intermediateUsable(): boolean {
    const s = this.#snapshot;
    const root = activeOf(s, 'x509-root');
    const inter = activeOf(s, 'x509-intermediate');
    return Boolean(root && inter && inter.parentId === root.id && inter.notAfter > epochSeconds(this.o.clock.now()) + 60);
  }

  async #expireRetired(caller: string): Promise<number> {
    const nowS = epochSeconds(this.o.clock.now());
    const gone = expiredRetirees(this.#snapshot, nowS);
    if (gone.length === 0) return 0;
    const kinds = new Set(gone.map((a) => a.kind));
    for (const kind of kinds) {
      const mine = gone.filter((a) => a.kind === kind);
      const changes: ChangeSet = {
        updates: mine.map((a) => ({ id: a.id, untrustedAt: nowS })),
        bumpBundle: kind !== 'x509-intermediate',
        plan: { expiredIds: mine.map((a) => a.id) },
        authorityId: mine[0]!.id,
        detail: `${kind} ${mine.map((a) => a.id).join(', ')} left trust: the last credential ${mine.length > 1 ? 'they' : 'it'} signed has expired`,
      };
      await this.#commitChanges(kind, 'expire', caller, changes, changes.detail);
    }
    return gone.length;
  }

  // --- internals ---

  #queued<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  #clusterLocked<T>(fn: () => Promise<T>): Promise<T> {
    return this.o.clusterLock ? this.o.clusterLock(fn) : fn();
  }

  async #catchUp(): Promise<boolean> {
    const snap = await this.o.lifecycleStore.snapshot();
    const before = this.#snapshot;
    if (!snapshotsDiffer(before, snap)) return false;
    await this.#reload({ bundleChanged: snap.bundleSequence !== before.bundleSequence, action: 'sync', kind: changedKind(before, snap) }, snap);
    return true;
  }

  #serial<T>(kind: AuthorityKind, action: string, fn: () => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      try {
        const r = await fn();
        this.o.onTransition?.(kind, action, 'success');
        return r;
      } catch (e) {
        this.o.onTransition?.(kind, action, 'failure');
        throw e;
      }
    });
  }

  #find(id: string): LifecycleAuthority | undefined {
    return this.#snapshot.authorities.find((a) => a.id === id);
  }

  #require(kind: AuthorityKind, id: string): LifecycleAuthority {
    const a = this.#find(id);
    if (!a || a.kind !== kind) throw new CaError('NOT_FOUND', `no ${kind} authority with id ${id}`);
    return a;
  }

  async #signer(keyRef: string): Promise<LocalSigner> {
    let s = this.#signers.get(keyRef);
    if (!s) {
      s = await this.o.keys.load(keyRef);
      this.#signers.set(keyRef, s);
    }
    return s;
  }

  async #reload(change?: LifecycleChange, loaded?: LifecycleSnapshot): Promise<void> {
    const snap = loaded ?? (await this.o.lifecycleStore.snapshot());
    if (!this.#ready) {
      this.#snapshot = snap;
      return;
    }
    const load = (ref: string) => this.#signer(ref);
    await this.x509.apply(snap, epochSeconds(this.o.clock.now()), load);
    await this.ssh.apply(snap, load);
    this.#snapshot = snap;
    if (!change) return;
    for (const l of [...this.#listeners]) {
      try {
        l(change);
      } catch (e) {
        this.o.logger.error({ err: e }, 'an authority change listener failed');
      }
    }
  }

  async #commitChanges(kind: AuthorityKind, action: string, caller: string, c: ChangeSet, detail: string): Promise<void> {
    const now = this.o.clock.now();
    const hook = this.o.crashHook ?? (() => undefined);
    hook(`${action}:before-commit`);
    const seq = await this.o.lifecycleStore.commit({
      journal: { startedMs: now.getTime(), kind, action, authorityId: c.authorityId, caller, plan: c.plan, detail },
      finishedMs: now.getTime(),
      updates: c.updates,
      ...(c.bumpBundle ? { bumpBundle: true } : {}),
      audit: [this.#auditRecord(now, caller, action, kind, c.authorityId, null, detail)],
      beforeCommit: () => hook(`${action}:in-transaction`),
    });
    hook(`${action}:committed`);
    this.o.logger.info({ kind, action, authority: c.authorityId, caller, bundleSequence: seq }, detail);
    await this.#reload({ bundleChanged: Boolean(c.bumpBundle), action, kind });
  }

  #auditRecord(now: Date, caller: string, action: string, kind: AuthorityKind, id: string, notAfter: number | null, detail: string, outcome: 'success' | 'failure' = 'success'): AuditRecord {
    return { timeMs: now.getTime(), caller, action: `authority.${action}`, spiffeId: null, serial: null, notAfter, outcome, detail: `${kind} ${id}: ${detail}` };
  }

  /** New keys (and certificates) for a kind; the first is the authority itself. */
  async #newMaterial(kind: AuthorityKind, state: 'prepared' | 'active', now: Date, keyTypeText?: string): Promise<{ keys: KeyMaterial[]; cross: Awaited<ReturnType<typeof crossSign>>[]; detail: string }> {
    const { trustDomain } = this.o;
    const s = this.#snapshot;
    if (kind === 'ssh-user' || kind === 'ssh-host') {
      const keyType = parseSshKeyType(keyTypeText) ?? this.o.sshKeyType;
      const k = await newSshCa({ kind, keyType, now, state });
      k.record.trustedSinceSeq = NEXT_SEQUENCE;
      return { keys: [k], cross: [], detail: `${state} (${keyType})` };
    }
    const keyType = parseX509KeyType(keyTypeText) ?? this.o.keyType;
    const activeRoot = activeOf(s, 'x509-root');
    if (kind === 'x509-intermediate') {
      if (!activeRoot) throw new CaError('FAILED_PRECONDITION', 'there is no active root to sign a new intermediate');
      const root = { record: activeRoot, signer: await this.#signer(activeRoot.keyRef) };
      const k = await newIntermediate({ trustDomain, keyType, now, ttlSeconds: this.o.intermediateTtlSeconds, root, state });
      k.record.trustedSinceSeq = activeRoot.trustedSinceSeq;
      return { keys: [k], cross: [], detail: `${state} under root ${activeRoot.id} (${keyType}), valid until ${new Date(k.record.notAfter * 1000).toISOString()}` };
    }
    const root = await newRoot({ trustDomain, keyType, now, ttlSeconds: this.o.rootTtlSeconds, state });
    root.record.trustedSinceSeq = NEXT_SEQUENCE;
    const inter = await newIntermediate({ trustDomain, keyType, now, ttlSeconds: this.o.intermediateTtlSeconds, root, state });
    inter.record.trustedSinceSeq = NEXT_SEQUENCE;
    const cross = [];
    if (activeRoot && isTrusted(activeRoot)) {
      cross.push(await crossSign({ trustDomain, now, subject: inter, issuer: { record: activeRoot, signer: await this.#signer(activeRoot.keyRef) } }));
    }
    const crossNote = cross.length > 0 ? `, cross-signed by root ${activeRoot!.id}` : '';
    return { keys: [root, inter], cross, detail: `${state} (${keyType}) with intermediate ${inter.record.id}${crossNote}` };
  }

  /** The journaled creation of new keys: pending entry, key files, one commit. */
  async #createTransition(
    made: { keys: KeyMaterial[]; cross: Awaited<ReturnType<typeof crossSign>>[] },
    t: { kind: AuthorityKind; action: string; caller: string; now: Date; bumpBundle: boolean; detail: string; updates?: TransitionCommit['updates'] },
  ): Promise<void> {
    const { lifecycleStore: ls, keys, logger } = this.o;
    const hook = this.o.crashHook ?? (() => undefined);
    const main = made.keys[0]!.record;
    const plan: TransitionPlan = { keyRefs: made.keys.map((k) => k.record.keyRef), createdIds: made.keys.map((k) => k.record.id) };
    const journal = { startedMs: t.now.getTime(), kind: t.kind, action: t.action, authorityId: main.id, caller: t.caller, plan, detail: t.detail };
    const pendingSeq = await ls.begin(journal);
    hook(`${t.action}:journaled`);
    const saved: string[] = [];
    try {
      for (const k of made.keys) {
        await keys.save(k.record.keyRef, k.signer);
        saved.push(k.record.keyRef);
      }
      hook(`${t.action}:keys-saved`);
      const audit = made.keys.map((k, i) =>
        this.#auditRecord(t.now, t.caller, t.action, k.record.kind, k.record.id, k.record.notAfter, i === 0 ? t.detail : `${k.record.state} with root ${main.id}`),
      );
      await ls.commit({
        pendingSeq,
        journal,
        finishedMs: this.o.clock.now().getTime(),
        inserts: made.keys.map((k) => k.record),
        crossCerts: made.cross,
        ...(t.updates ? { updates: t.updates } : {}),
        bumpBundle: t.bumpBundle,
        audit,
        beforeCommit: () => hook(`${t.action}:in-transaction`),
      });
    } catch (e) {
      for (const ref of saved) await keys.remove(ref).catch(() => undefined);
      const why = e instanceof Error ? e.message : String(e);
      await ls
        .abandon(pendingSeq, this.o.clock.now().getTime(), `failed: ${why}`, [this.#auditRecord(t.now, t.caller, t.action, t.kind, main.id, null, `failed and rolled back: ${why}`, 'failure')])
        .catch((err: unknown) => logger.error({ err }, 'cannot record a failed transition; it is rolled back at the next start'));
      throw e;
    }
    hook(`${t.action}:committed`);
    for (const k of made.keys) this.#signers.set(k.record.keyRef, k.signer);
    logger.info({ kind: t.kind, action: t.action, authority: main.id, caller: t.caller }, `${t.kind} ${main.id} ${t.detail}`);
    await this.#reload({ bundleChanged: t.bumpBundle, action: t.action, kind: t.kind });
  }

  /** Rolls back transitions a previous run left pending (the CA stopped in the middle). */
  async #recover(): Promise<void> {
    const { lifecycleStore: ls, keys, logger, clock } = this.o;
    const pending = await ls.pending();
    if (pending.length === 0) return;
    const known = new Set((await ls.snapshot()).authorities.map((a) => a.keyRef));
    for (const j of pending) {
      const removed: string[] = [];
      for (const ref of j.plan.keyRefs ?? []) {
        if (!known.has(ref) && (await keys.remove(ref))) removed.push(ref);
      }
      const now = clock.now();
      const detail = `interrupted (the CA stopped during the transition); rolled back${removed.length ? `, removed ${removed.length} key file(s)` : ''}`;
      await ls.abandon(j.seq, now.getTime(), detail, [this.#auditRecord(now, STARTUP_CALLER, j.action, j.kind, j.authorityId ?? '-', null, `${j.action} started by ${j.caller} at ${new Date(j.startedMs).toISOString()} ${detail}`, 'failure')]);
      logger.warn({ kind: j.kind, action: j.action, authority: j.authorityId, journal: j.seq }, `an interrupted ${j.action} was rolled back`);
    }
  }

  /** First start: create each kind's active authority; replace an intermediate that is unusable now. */
  async #bootstrap(): Promise<void> {
    const now = this.o.clock.now();
    if (!activeOf(this.#snapshot, 'x509-root')) {
      const made = await this.#newMaterial('x509-root', 'active', now);
      await this.#createTransition(made, { kind: 'x509-root', action: 'create', caller: STARTUP_CALLER, now, bumpBundle: true, detail: 'created (first start)' });
    } else {
      await this.#ensureUsableIntermediate(STARTUP_CALLER);
    }
    for (const kind of ['ssh-user', 'ssh-host'] as const) {
      if (activeOf(this.#snapshot, kind)) continue;
      const made = await this.#newMaterial(kind, 'active', now);
      await this.#createTransition(made, { kind, action: 'create', caller: STARTUP_CALLER, now, bumpBundle: true, detail: 'created (first start)' });
    }
  }

  /**
   * Makes sure an intermediate can sign: when the active one is missing,
   * expires within a minute, or hangs off a root that is not active (the
   * CA was down too long), a new one under the active root is created and
   * activated at once. Returns true when it had to.
   */
  async #ensureUsableIntermediate(caller: string): Promise<boolean> {
    const now = this.o.clock.now();
    const nowS = epochSeconds(now);
    const s = this.#snapshot;
    const root = activeOf(s, 'x509-root');
    const inter = activeOf(s, 'x509-intermediate');
    if (!root) throw new CaError('INTERNAL', 'no active root');
    if (this.#intermediateUsable()) return false;
    const made = await this.#newMaterial('x509-intermediate', 'active', now);
    const updates = inter ? [{ id: inter.id, state: 'retired' as const, retiredAt: nowS, trustUntil: Math.min(inter.notAfter, nowS + this.o.retire.x509LeafSeconds) }] : [];
    const why = inter ? `replaced ${inter.id}, which ${inter.notAfter <= nowS ? 'had expired' : inter.parentId !== root.id ? 'hangs off a root that is not active' : 'expires within a minute'}` : 'there was none';
    await this.#createTransition(made, { kind: 'x509-intermediate', action: 'create', caller, now, bumpBundle: false, detail: `created and activated at once: ${why}`, updates });
    return true;
  }
}

function parseX509KeyType(v: string | undefined): KeyType | undefined {
  if (!v) return undefined;
  if (v === 'ec-p256' || v === 'ec-p384' || v === 'ed25519') return v;
  throw new CaError('INVALID_ARGUMENT', `key type ${JSON.stringify(v)} is not one of ec-p256, ec-p384, ed25519`);
}

function parseSshKeyType(v: string | undefined): SshCaKeyType | undefined {
  if (!v) return undefined;
  if (v === 'ed25519' || v === 'ec-p256') return v;
  throw new CaError('INVALID_ARGUMENT', `SSH CA key type ${JSON.stringify(v)} is not one of ed25519, ec-p256`);
}
