/**
 * Keeps a CA server in step with the others sharing its PostgreSQL
 * database. Servers announce changes on one LISTEN/NOTIFY channel:
 *
 * - `lifecycle`: sent by the life-cycle store in the committing
 *   transaction; every server reloads the authorities (new bundle, new
 *   signing intermediate), and its listeners (serving identity, push to
 *   its agents) hear of it.
 * - `entries:<server>` and `agent:<server>`: a change of registration
 *   entries or of an agent record made through one server's admin API;
 *   the others pass it to their connected agents (WatchChanges), which
 *   sync at once.
 *
 * A notification can be missed (the listening connection dropped and came
 * back): the life-cycle version is also polled every `pollMs`, and checked
 * after every reconnect. Entries need no polling: agents poll anyway.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { ChangeNotice, ChangeReason } from '../push/change-hub.js';
import type { PgDb } from '../store/postgres-db.js';
import { CHANGES_CHANNEL } from '../store/postgres-lifecycle.js';

export interface ClusterChangesOptions {
  db: PgDb;
  /** Reloads the authorities from the database; resolves true when anything changed. */
  refreshLifecycle: () => Promise<boolean>;
  /** A value that changes with every committed transition (PostgresLifecycleStore.version). */
  lifecycleVersion: () => Promise<string>;
  /** This server's change hub (what its connected agents hear). */
  hub: { publish(reason: ChangeReason): void; tap(fn: (n: ChangeNotice) => void): () => void };
  logger: Logger;
  /** Milliseconds between version checks. Default 2000. */
  pollMs?: number;
}

/** Reasons relayed between servers: trust data travels as `lifecycle` instead. */
const RELAYED: ReadonlySet<ChangeReason> = new Set(['entries', 'agent']);

export class ClusterChanges {
  /** Names this server in its notifications, so that it ignores its own. */
  readonly instance = randomBytes(8).toString('hex');
  readonly #o: ClusterChangesOptions;
  readonly #stop = new AbortController();
  readonly #done: Promise<void>;
  readonly #untap: () => void;
  #relaying = false;
  #version = '';
  #refreshing: Promise<void> | null = null;
  #again = false;

  constructor(o: ClusterChangesOptions) {
    this.#o = o;
    this.#untap = o.hub.tap((n) => {
      if (this.#relaying || !RELAYED.has(n.reason)) return;
      o.db.run('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, `${n.reason}:${this.instance}`]).catch((e: unknown) =>
        o.logger.warn({ err: (e as Error).message }, 'could not tell the other CA servers about a change; their agents sync at their next poll'),
      );
    });
    this.#done = Promise.all([this.#listen(), this.#poll()]).then(() => undefined);
  }

  async close(): Promise<void> {
    this.#untap();
    this.#stop.abort();
    await this.#done;
    await this.#refreshing;
  }

  /** Reloads the life cycle (coalescing: one reload at a time, one more if asked meanwhile). */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      do {
        this.#again = false;
        try {
          this.#version = await this.#o.lifecycleVersion();
          if (await this.#o.refreshLifecycle()) this.#o.logger.info('authorities changed on another CA server; reloaded');
        } catch (e) {
          this.#o.logger.warn({ err: (e as Error).message }, 'reloading the authorities from the database failed; retrying at the next check');
          this.#version = '';
        }
      } while (this.#again && !this.#stop.signal.aborted);
    })().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  #onNotification(payload: string): void {
    const [what, from] = payload.split(':');
    if (what === 'lifecycle') {
      void this.refresh();
      return;
    }
    if (from === this.instance || !RELAYED.has(what as ChangeReason)) return;
    this.#relaying = true;
    try {
      this.#o.hub.publish(what as ChangeReason);
    } finally {
      this.#relaying = false;
    }
  }

  async #listen(): Promise<void> {
    const { db, logger } = this.#o;
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      let client: pg.Client | undefined;
      try {
        client = await db.connectDedicated('changes');
        const lost = new Promise<Error>((resolve) => client!.on('error', resolve));
        client.on('notification', (m) => {
          if (m.channel === CHANGES_CHANNEL) this.#onNotification(m.payload ?? '');
        });
        await client.query(`LISTEN ${CHANGES_CHANNEL}`);
        if (failures > 0) logger.info('listening for changes from the other CA servers again');
        failures = 0;
        // Whatever happened while not listening.
        void this.refresh();
        // close() may have come during the awaits above, and an abort listener added after the abort never fires.
        const stopped = new Promise<void>((resolve) => {
          if (this.#stop.signal.aborted) return resolve();
          this.#stop.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        const outcome = await Promise.race([lost, stopped]);
        if (outcome instanceof Error) throw outcome;
      } catch (e) {
        if (this.#stop.signal.aborted) break;
        failures++;
        if (failures === 1) logger.warn({ err: (e as Error).message }, 'lost the change notifications from the other CA servers; reconnecting (polling meanwhile)');
      } finally {
        await client?.end().catch(() => undefined);
      }
      await sleep(Math.min(5000, 250 * 2 ** Math.min(failures, 5)), this.#stop.signal);
    }
  }

  async #poll(): Promise<void> {
    const pollMs = this.#o.pollMs ?? 2000;
    while (!this.#stop.signal.aborted) {
      await sleep(pollMs, this.#stop.signal);
      if (this.#stop.signal.aborted) return;
      try {
        if ((await this.#o.lifecycleVersion()) !== this.#version) await this.refresh();
      } catch {
        // The database is unreachable: the listener reports it; the next check retries.
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
