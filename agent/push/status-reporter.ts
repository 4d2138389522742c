/**
 * Tells the CA what this agent has applied and holds (ReportAgentStatus):
 * the bundle sequence of the trust data it applied, and for each authority
 * id how many of its credentials chain to it. The CA counts these as
 * rotation acknowledgements and as taint progress. A report is sent when
 * either changed since the last one the CA accepted (and at least every
 * few minutes); reports are coalesced, and a failed one is retried with
 * the next poke.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ReportAgentStatusRequest } from '../../proto/gen/brevis/ca/v1/push.js';
import type { Clock } from '../../spiffe/clock.js';
import type { NodeChannel } from '../node/channel.js';
import type { Mutex } from '../node/mutex.js';

export interface StatusReporterOptions {
  channel: NodeChannel;
  /** Shared with the sync loop and the agent identity: one node API operation at a time. */
  lock: Mutex;
  clock: Clock;
  logger: Logger;
  /** Authority id -> credentials held that chain to it (now). */
  holdings: () => ReadonlyMap<string, number>;
  timeoutMs?: number;
  /** A report is sent at least this often even when nothing changed (ms). Default 5 minutes. */
  refreshMs?: number;
}

export class StatusReporter {
  readonly #o: StatusReporterOptions;
  #applied = 0;
  #lastSent: { key: string; at: number } | null = null;
  #running: Promise<void> | null = null;
  #again = false;

  constructor(options: StatusReporterOptions) {
    this.#o = options;
  }

  /** The bundle sequence of the trust data now applied (X.509 bundle and SSH trust files). */
  bundleApplied(sequence: number): void {
    if (sequence > this.#applied) this.#applied = sequence;
  }

  get appliedSequence(): number {
    return this.#applied;
  }

  /** Reports soon if anything changed; returns the report in flight (never rejects). */
  poke(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          await this.#sendIfChanged();
        } while (this.#again);
      } finally {
        this.#running = null;
      }
    })();
    return this.#running;
  }

  async #sendIfChanged(): Promise<void> {
    if (this.#applied === 0) return;
    const holdings = [...this.#o.holdings()].filter(([, n]) => n > 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const req: ReportAgentStatusRequest = { bundleSequence: this.#applied, holdings: holdings.map(([authorityId, credentials]) => ({ authorityId, credentials })) };
    const key = JSON.stringify(req);
    const now = this.#o.clock.now().getTime();
    if (this.#lastSent && this.#lastSent.key === key && now - this.#lastSent.at < (this.#o.refreshMs ?? 300_000)) return;
    try {
      await this.#o.lock.run(() => this.#call(req));
      this.#lastSent = { key, at: now };
    } catch (e) {
      this.#o.logger.debug({ err: (e as Error).message }, 'reporting status to the CA failed; will retry');
    }
  }

  #call(req: ReportAgentStatusRequest): Promise<void> {
    const timeoutMs = this.#o.timeoutMs ?? 30_000;
    return this.#o.channel.use(
      'agent',
      (client) =>
        new Promise<void>((resolve, reject) => {
          client.reportAgentStatus(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err) => (err ? reject(err) : resolve()));
        }),
    );
  }
}
