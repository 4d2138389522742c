/**
 * What a CA server needs to run beside others on one PostgreSQL database:
 * the cluster-wide transition lock, the singleton that runs the automatic
 * rotation, and the change feed that keeps it in step with the others.
 * With SQLite (one server) there is no cluster and none of this runs.
 */
import type { Logger } from 'pino';
import type { ChangeNotice, ChangeReason } from '../push/change-hub.js';
import type { PostgresStore } from '../store/postgres.js';
import { PostgresLifecycleStore } from '../store/postgres-lifecycle.js';
import { ClusterChanges } from './cluster-changes.js';
import { singletonRunner, type SingletonRunner } from './singleton.js';

export interface Cluster {
  /** Holds the transition lock while `fn` runs (AuthorityLifecycleOptions.clusterLock). */
  clusterLock: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Runs work on exactly one server at a time (startRotation's `singleton`). */
  singleton: SingletonRunner;
  /** Starts following the other servers' changes; close the result on stop. */
  follow(d: {
    refreshLifecycle: () => Promise<boolean>;
    hub: { publish(reason: ChangeReason): void; tap(fn: (n: ChangeNotice) => void): () => void };
  }): ClusterChanges;
}

export interface ClusterTimings {
  /** How often a follower asks for the singleton, milliseconds (default 1000). */
  singletonRetryMs?: number;
  /** How often the singleton checks its connection, milliseconds (default 2000). */
  singletonPingMs?: number;
  /** How often the authorities' version is polled, milliseconds (default 2000). */
  pollMs?: number;
}

/** The cluster of a PostgreSQL datastore, or null for SQLite. */
export function clusterFor(datastore: { postgres: PostgresStore | null }, logger: Logger, timings: ClusterTimings = {}): Cluster | null {
  const pg = datastore.postgres;
  if (!pg) return null;
  const lifecycleStore = new PostgresLifecycleStore(pg.db);
  return {
    clusterLock: (fn) => lifecycleStore.withTransitionLock(fn),
    singleton: singletonRunner({
      db: pg.db,
      logger,
      name: 'rotation',
      ...(timings.singletonRetryMs ? { retryMs: timings.singletonRetryMs } : {}),
      ...(timings.singletonPingMs ? { pingMs: timings.singletonPingMs } : {}),
    }),
    follow: (d) =>
      new ClusterChanges({
        db: pg.db,
        refreshLifecycle: d.refreshLifecycle,
        lifecycleVersion: () => lifecycleStore.version(),
        hub: d.hub,
        logger,
        ...(timings.pollMs ? { pollMs: timings.pollMs } : {}),
      }),
  };
}
