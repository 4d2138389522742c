/**
 * Work that exactly one CA server at a time must do (the automatic
 * rotation schedule), chosen through PostgreSQL: whoever holds a session
 * advisory lock does it. The lock lives on a connection of its own; when
 * that server dies its connection drops and PostgreSQL releases the lock,
 * and the next server that asks (every `retryMs`) takes over.
 *
 * The leader checks its connection every `pingMs`; when the check fails it
 * stops the work at once, since PostgreSQL may already have given the lock
 * to another server. Keepalives on the session let PostgreSQL notice a
 * leader cut off by the network within about 25 seconds (on TCP).
 *
 * Being the singleton is an efficiency, not the safety: every transition
 * also runs under the cluster-wide transition lock after catching up with
 * the database, so even two overlapping leaders could not apply the same
 * step twice.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { PgDb } from '../store/postgres-db.js';
import { LOCK_CLASS, LOCKS } from '../store/postgres-locks.js';

/** Runs `work` while this server is the one; returns a closer that stops it and steps down. */
export type SingletonRunner = (work: (signal: AbortSignal) => Promise<void>) => { close(): Promise<void> };

export interface SingletonOptions {
  db: PgDb;
  /** The work; must return once `signal` aborts. */
  work: (signal: AbortSignal) => Promise<void>;
  logger: Logger;
  /** What the work is, for logs. */
  name: string;
  /** How often a follower asks for the lock, milliseconds. Default 1000. */
  retryMs?: number;
  /** How often the leader checks its connection, milliseconds. Default 2000. */
  pingMs?: number;
  /** Told when this server starts and stops leading (tests, metrics). */
  onLeading?: (leading: boolean) => void;
}

const KEEPALIVES = 'SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3';

export class Singleton {
  readonly #o: SingletonOptions;
  readonly #stop = new AbortController();
  readonly #done: Promise<void>;
  #leading = false;

  constructor(o: SingletonOptions) {
    this.#o = o;
    this.#done = this.#run();
  }

  get leading(): boolean {
    return this.#leading;
  }

  /** Stops the work (waiting for it), releases the lock, ends the connection. */
  async close(): Promise<void> {
    this.#stop.abort();
    await this.#done;
  }

  async #run(): Promise<void> {
    const { logger } = this.#o;
    const retryMs = this.#o.retryMs ?? 1000;
    while (!this.#stop.signal.aborted) {
      let client: pg.Client | undefined;
      try {
        client = await this.#o.db.connectDedicated(`singleton:${this.#o.name}`, Math.max(5000, (this.#o.pingMs ?? 2000) * 2));
        const lost = new Promise<Error>((resolve) => client!.on('error', resolve));
        await client.query(KEEPALIVES).catch(() => undefined);
        while (!this.#stop.signal.aborted) {
          const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [LOCK_CLASS, LOCKS.singleton]);
          if (rows[0]?.ok) {
            // close() may have come while the lock was being taken: step down
            // without starting the work (its abort has already fired).
            if (this.#stop.signal.aborted) {
              await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCKS.singleton]).catch(() => undefined);
              break;
            }
            await this.#lead(client, lost);
            break;
          }
          await sleep(retryMs, this.#stop.signal);
        }
      } catch (e) {
        if (!this.#stop.signal.aborted) logger.warn({ err: (e as Error).message, work: this.#o.name }, 'singleton: lost the database connection; trying again');
      } finally {
        await client?.end().catch(() => undefined);
      }
      await sleep(retryMs, this.#stop.signal).catch(() => undefined);
    }
  }

  /** Runs the work until closed or the connection fails; then stops the work and steps down. */
  async #lead(client: pg.Client, lost: Promise<Error>): Promise<void> {
    const { logger, name } = this.#o;
    const pingMs = this.#o.pingMs ?? 2000;
    const work = new AbortController();
    const stopWork = () => work.abort();
    // #run has just checked that no close() came: the listener below hears any later one.
    this.#stop.signal.addEventListener('abort', stopWork, { once: true });
    this.#leading = true;
    this.#o.onLeading?.(true);
    logger.info({ work: name }, 'singleton: this server now does the singleton work');
    let failure: Error | undefined;
    const running = this.#o.work(work.signal).catch((e: unknown) => logger.error({ err: e, work: name }, 'singleton work failed'));
    try {
      for (;;) {
        const outcome = await Promise.race([
          sleep(pingMs, work.signal).then(() => 'tick' as const, () => 'stopped' as const),
          lost.then((e) => e),
          running.then(() => 'ended' as const),
        ]);
        if (outcome === 'stopped') break;
        if (outcome === 'ended') {
          failure = new Error('the work ended by itself');
          break;
        }
        if (outcome instanceof Error) {
          failure = outcome;
          break;
        }
        await client.query('SELECT 1');
      }
    } catch (e) {
      failure = e as Error;
    } finally {
      work.abort();
      this.#stop.signal.removeEventListener('abort', stopWork);
      await running;
      this.#leading = false;
      this.#o.onLeading?.(false);
    }
    if (failure) {
      logger.warn({ err: failure.message, work: name }, 'singleton: stepped down; another server may take over');
      throw failure;
    }
    await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCKS.singleton]).catch(() => undefined);
    logger.info({ work: name }, 'singleton: stepped down (stopping)');
  }
}

/** A SingletonRunner on `db`. */
export function singletonRunner(d: { db: PgDb; logger: Logger; name: string; retryMs?: number; pingMs?: number; onLeading?: (leading: boolean) => void }): SingletonRunner {
  return (work) => new Singleton({ ...d, work });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Error('aborted'));
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
