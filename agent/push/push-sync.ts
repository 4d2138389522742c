/**
 * The agent's side of push sync: a WatchChanges stream that wakes the sync
 * loop as soon as the CA announces a change, reports of what the agent
 * applied and holds after each sync, and the response to tainted
 * authorities: every workload SVID chained to one is minted again in the
 * same sync, and the agent SVID is renewed at once.
 */
import type { Logger } from 'pino';
import type { AuthorityStatus, WatchChangesResponse } from '../../proto/gen/brevis/ca/v1/push.js';
import type { Clock } from '../../spiffe/clock.js';
import type { CachedSvid } from '../cache/svid-cache.js';
import type { NodeChannel } from '../node/channel.js';
import type { Mutex } from '../node/mutex.js';
import type { AgentSvid } from '../svid/agent-svid.js';
import type { BackoffPolicy } from '../sync/backoff.js';
import { chainAuthorityIds, countHoldings } from './chain-ids.js';
import { ChangeWatcher } from './change-watcher.js';
import { StatusReporter } from './status-reporter.js';
import type { AgentSSH } from '../../proto/gen/brevis/ca/v1/types.js';
import { SshTaintResponder, type SshHostSide } from './ssh-holdings.js';

/** What push sync needs from the SVID cache. */
export interface PushCache {
  entries(): ReadonlyArray<{ id: string }>;
  svidOf(entryId: string): CachedSvid | null;
  markStale(pred: (svid: CachedSvid) => boolean): number;
}

/** What push sync needs from the agent identity. */
export interface PushIdentity {
  readonly current: AgentSvid;
  onChange(listener: (svid: AgentSvid) => void): () => void;
  /** Renews the agent SVID as soon as possible. */
  renewSoon(): void;
}

export interface PushSyncOptions {
  channel: NodeChannel;
  lock: Mutex;
  cache: PushCache;
  identity: PushIdentity;
  clock: Clock;
  logger: Logger;
  backoff: BackoffPolicy;
  /** Ends the sync loop's wait: sync now. */
  wake: () => void;
  /** The SSH side (host certificate), when the agent keeps one. */
  ssh?: SshHostSide | null;
  /** The stored trust bundle file (named in re-bootstrap advice). */
  bundleFile?: string;
  random?: () => number;
}

export class PushSync {
  readonly watcher: ChangeWatcher;
  readonly reporter: StatusReporter;
  readonly #o: PushSyncOptions;
  #lastNotice: WatchChangesResponse | null = null;
  readonly #ssh: SshTaintResponder;

  constructor(options: PushSyncOptions) {
    this.#o = options;
    const { channel, clock, logger, backoff } = options;
    this.watcher = new ChangeWatcher({
      channel,
      clock,
      logger,
      backoff,
      onChange: (n) => {
        this.#lastNotice = n;
        options.wake();
      },
      ...(options.random ? { random: options.random } : {}),
      ...(options.bundleFile ? { bundleFile: options.bundleFile } : {}),
    });
    this.#ssh = new SshTaintResponder(options.ssh ?? null);
    this.reporter = new StatusReporter({ channel, lock: options.lock, clock, logger, holdings: () => this.holdings() });
  }

  /** The last notification from the CA, or null. */
  get lastNotice(): WatchChangesResponse | null {
    return this.#lastNotice;
  }

  /** Authority id -> credentials held that chain to it: workload SVIDs still valid, the agent SVID, the SSH host certificate. */
  holdings(): Map<string, number> {
    const now = this.#o.clock.now().getTime();
    const chains: Array<readonly Buffer[]> = [this.#o.identity.current.chain];
    for (const e of this.#o.cache.entries()) {
      const svid = this.#o.cache.svidOf(e.id);
      if (svid && svid.notAfterMs > now) chains.push(svid.chain);
    }
    const out = countHoldings(chains);
    for (const f of this.#ssh.fingerprints()) out.set(f, (out.get(f) ?? 0) + 1);
    return out;
  }

  /** The SSH part of a sync, before the SSH side applies it. */
  observeSsh(info: AgentSSH | undefined): void {
    this.#ssh.observe(info);
  }

  /** The bundle of a sync or attestation was applied. */
  bundleApplied(sequence: number): void {
    this.reporter.bundleApplied(sequence);
  }

  /**
   * The CA's word on tainted and revoked authorities, from each sync before
   * its SVIDs are checked: what chains to them is minted again now.
   */
  onAuthorities(status: AuthorityStatus | undefined): void {
    const bad = new Set(status?.taintedIds ?? []);
    if (bad.size === 0) return;
    const chained = (chain: readonly Buffer[]) => chainAuthorityIds(chain).some((id) => bad.has(id));
    const marked = this.#o.cache.markStale((svid) => chained(svid.chain));
    const agent = this.#o.identity.current;
    if (chained(agent.chain)) {
      this.#o.logger.warn({ agentId: agent.spiffeId, serial: agent.serial }, 'the agent SVID chains to a tainted authority: renewing it now');
      this.#o.identity.renewSoon();
    }
    if (marked > 0) this.#o.logger.warn({ svids: marked, tainted: [...bad] }, 'replacing SVIDs chained to tainted authorities');
    if (this.#ssh.respond(bad)) this.#o.logger.warn({ tainted: [...bad] }, 'the SSH host certificate was signed by a tainted CA: replacing it');
  }

  /** A sync finished: report if anything changed. */
  onSynced(): void {
    void this.reporter.poke();
  }

  /** Watches for changes, and reports again whenever the agent SVID changes, until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const off = this.#o.identity.onChange(() => {
      this.watcher.restart();
      void this.reporter.poke();
    });
    try {
      await this.watcher.run(signal);
    } finally {
      off();
    }
  }
}
