/**
 * The sync loop: every interval (and at each SVID's rotation point) fetch
 * the authorized entries and the bundle from the CA, then mint what is
 * missing, changed or due. While the CA cannot be reached, retry with
 * exponential backoff and jitter, never later than half-way to the
 * earliest expiry of an SVID still served; the cache keeps serving what is
 * valid meanwhile.
 */
import type { Logger } from 'pino';
import type { AuthorityStatus } from '../../proto/gen/brevis/ca/v1/push.js';
import type { AgentSSH, Bundle } from '../../proto/gen/brevis/ca/v1/types.js';
import type { Clock } from '../../spiffe/clock.js';
import type { SvidCache } from '../cache/svid-cache.js';
import type { RotationPolicy } from '../config/config.js';
import { isNodeApiError } from '../node/errors.js';
import type { Mutex } from '../node/mutex.js';
import type { NodeApi } from '../node/node-api.js';
import type { AgentIdentity } from '../svid/agent-identity.js';
import { pollDelayMs, retryDelayMs, type BackoffPolicy } from './backoff.js';
import { honourRetryHint } from './retry-hint.js';
import { mintSvids, type MintFailure } from './mint-svids.js';

export interface SyncerOptions {
  api: NodeApi;
  /** Shared with the agent identity: one node API operation at a time. */
  lock: Mutex;
  cache: SvidCache;
  identity: AgentIdentity;
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  rotation: RotationPolicy;
  backoff: BackoffPolicy;
  /** Applies a bundle from the CA (store it, trust it, serve it). */
  onBundle: (bundle: Bundle) => void;
  /** Told the SSH part of every sync (CA keys, host names); undefined from a CA without SSH. Must not throw. */
  onSsh?: (ssh: AgentSSH | undefined) => void;
  /** Told the CA's tainted authorities before each sync checks its SVIDs (push sync marks what chains to them). Must not throw. */
  onAuthorities?: (authorities: AuthorityStatus | undefined) => void;
  /** Told when a sync has applied everything (push sync reports to the CA). Must not throw. */
  onSynced?: () => void;
  /** Told what each successful sync did (the agent releases memory after large ones). Must not throw. */
  afterSync?: (report: SyncReport) => void;
  maxBatch?: number;
  random?: () => number;
}

export interface SyncReport {
  entries: number;
  added: number;
  removed: number;
  updated: number;
  minted: number;
  failed: MintFailure[];
}

/**
 * The whole state is fetched at least this often even when the CA says
 * nothing changed (a bound on any drift between the agent and the CA).
 */
export const FULL_FETCH_EVERY_MS = 60_000;

/** Longest single timer wait (setTimeout's limit is about 24.8 days). */
const MAX_SLEEP_MS = 2 ** 31 - 1;

export class Syncer {
  readonly #o: SyncerOptions;
  /** Last failure message logged per entry, so a persistent refusal is logged once. */
  readonly #reported = new Map<string, string>();
  #wake: (() => void) | null = null;
  /** The CA's version of the state last applied in full or confirmed unchanged ('' : none). */
  #version = '';
  /** When the whole state was last fetched (clock ms). */
  #fullAtMs = 0;
  /** The bundle, SSH data and authority status of the last whole state. */
  #last: { bundle: Bundle; ssh: AgentSSH | undefined; authorities: AuthorityStatus | undefined } | undefined;
  /** A wake-up arrived while no wait was in progress. */
  #woken = false;

  constructor(options: SyncerOptions) {
    this.#o = options;
  }

  /** One sync: fetch, apply, mint. Rejects with NodeApiError when a call fails. */
  syncOnce(): Promise<SyncReport> {
    const { api, cache, clock, lock } = this.#o;
    return lock.run(async () => {
      const nowMs = clock.now().getTime();
      // Ask for what changed since the state last applied; the whole state now and then regardless.
      const full = this.#version === '' || nowMs - this.#fullAtMs >= FULL_FETCH_EVERY_MS;
      const fetched = await api.fetchAuthorizedEntries(full ? '' : this.#version);
      this.#version = '';
      let changes = { added: 0, removed: 0, updated: 0 };
      if (!fetched.unchanged) {
        this.#last = { bundle: fetched.bundle, ssh: fetched.ssh, authorities: fetched.authorities };
        changes = cache.setEntries(fetched.entries);
        this.#fullAtMs = nowMs;
      }
      // The hooks see the state on every sync, changed or not: they also check the node
      // itself (the SSH host key may have changed on disk).
      const last = this.#last!;
      this.#o.onBundle(last.bundle);
      this.#o.onSsh?.(last.ssh);
      this.#o.onAuthorities?.(last.authorities);
      const entries = cache.entries();
      const due = cache.due(clock.now());
      const outcome = await mintSvids(due, {
        api,
        clock,
        rotation: this.#o.rotation,
        ...(this.#o.maxBatch !== undefined ? { maxBatch: this.#o.maxBatch } : {}),
        ...(this.#o.random ? { random: this.#o.random } : {}),
        onBatch: (minted) => cache.putSvids(minted),
      });
      cache.markReady();
      // Remembered only once everything was applied: a failed sync fetches the whole state again.
      this.#version = fetched.version;
      this.#o.onSynced?.();
      this.#logFailures(outcome.failed, due.map((e) => e.id), new Set(entries.map((e) => e.id)));
      const report = { entries: entries.length, ...changes, minted: outcome.minted.length, failed: outcome.failed };
      if (report.added + report.removed + report.updated + report.minted > 0) {
        const { failed, ...counts } = report;
        this.#o.logger.info({ ...counts, failed: failed.length }, 'synced with the CA');
      }
      this.#o.afterSync?.(report);
      return report;
    });
  }

  /** Ends the current wait and syncs at once (e.g. after a bundle change); during a sync, the next wait is skipped. */
  wake(): void {
    if (this.#wake) this.#wake();
    else this.#woken = true;
  }

  /**
   * Syncs until `signal` aborts (then resolves). Rejects with
   * AgentSvidError when the CA refused the agent and it cannot attest again.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, logger, identity, cache } = this.#o;
    let failures = 0;
    while (!signal.aborted) {
      const serial = identity.current.serial;
      let delay: number;
      if (failures > 0) this.#redialIfExpiring();
      try {
        await this.syncOnce();
        if (failures > 0) logger.info({ afterFailures: failures }, 'reached the CA again');
        failures = 0;
        const now = clock.now();
        const rotation = cache.nextRotation(now);
        delay = Math.min(pollDelayMs(this.#o.intervalMs, this.#o.random), rotation ? rotation.getTime() - now.getTime() : Infinity);
      } catch (e) {
        if (!isNodeApiError(e)) throw e;
        failures++;
        if (e.code === 'PERMISSION_DENIED') await this.#recover(serial, e.message);
        const now = clock.now();
        const expiry = cache.earliestExpiry(now);
        delay = honourRetryHint(retryDelayMs(failures, this.#o.backoff, now.getTime(), expiry?.getTime() ?? null, this.#o.random), e);
        logger.warn(
          { err: e.message, retryInMs: Math.round(delay), ...(expiry ? { earliestExpiry: expiry.toISOString() } : {}) },
          'sync with the CA failed; still serving valid SVIDs',
        );
      }
      if (!(await this.#sleep(Math.min(MAX_SLEEP_MS, Math.max(0, delay)), signal))) return;
    }
  }

  /** Before a retry: a CA that is back must be reached before the earliest SVID lapses (NodeChannel.redialIfExpiring). */
  #redialIfExpiring(): void {
    const now = this.#o.clock.now();
    const expiry = this.#o.cache.earliestExpiry(now);
    if (this.#o.api.channel.redialIfExpiring(now.getTime(), expiry?.getTime() ?? null)) {
      this.#o.logger.debug({ earliestExpiry: expiry!.toISOString() }, 'an SVID expires soon: dialling the CA again for the retry');
    }
  }

  /** The CA refused our agent SVID: attest again if possible (AgentSvidError propagates). */
  async #recover(serial: string, reason: string): Promise<void> {
    try {
      await this.#o.identity.recover(serial, reason);
    } catch (e) {
      if (!isNodeApiError(e)) throw e;
      this.#o.logger.warn({ err: e.message }, 'attesting again failed; will retry');
    }
  }

  #logFailures(failed: MintFailure[], attempted: string[], current: ReadonlySet<string>): void {
    for (const id of this.#reported.keys()) if (!current.has(id)) this.#reported.delete(id);
    for (const id of attempted) if (!failed.some((f) => f.entryId === id)) this.#reported.delete(id);
    for (const f of failed) {
      if (this.#reported.get(f.entryId) === f.message) continue;
      this.#reported.set(f.entryId, f.message);
      this.#o.logger.warn({ entryId: f.entryId, code: f.code, err: f.message }, 'the CA did not mint an SVID for this entry');
    }
  }

  async #sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.#woken) {
      this.#woken = false;
      return !signal.aborted;
    }
    const woken = new AbortController();
    this.#wake = () => woken.abort();
    try {
      await this.#o.clock.sleep(ms, AbortSignal.any([signal, woken.signal]));
      return true;
    } catch {
      return !signal.aborted;
    } finally {
      this.#wake = null;
    }
  }
}
