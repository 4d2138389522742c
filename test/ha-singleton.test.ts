/**
 * The singleton through PostgreSQL: exactly one of several contenders does
 * the work at a time, another takes over when the leader stops or loses
 * its connection, and the work is stopped when its leader loses the lock.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Singleton } from '../ca/ha/singleton.js';
import { PgDb } from '../ca/store/postgres-db.js';
import { openPostgresStore } from '../ca/store/postgres.js';
import { afterDedicatedQuery, settlesWithin, startTestPostgres, type TestPostgres } from './support/postgres.js';
import { waitFor } from './support/agent-harness.js';

const logger = pino({ level: process.env.BREVIS_TEST_LOG ?? 'silent' });

interface Contender {
  name: string;
  db: PgDb;
  singleton: Singleton;
  /** Work runs: start and stop times in order. */
  events: string[];
  running: boolean;
}

describe('singleton work through PostgreSQL', () => {
  let server: TestPostgres;
  let url: string;
  const contenders: Contender[] = [];
  beforeAll(async () => {
    server = await startTestPostgres();
    url = await server.createDatabase();
    await (await openPostgresStore(url)).close();
  });
  afterEach(async () => {
    for (const c of contenders.splice(0)) {
      await c.singleton.close();
      await c.db.close();
    }
  });
  afterAll(() => server.stop());

  async function contender(name: string): Promise<Contender> {
    const db = await PgDb.open(url, { applicationName: `brevis-test-${name}` });
    const c: Contender = { name, db, events: [], running: false, singleton: undefined as unknown as Singleton };
    c.singleton = new Singleton({
      db,
      logger,
      name: 'test',
      retryMs: 100,
      pingMs: 200,
      work: async (signal) => {
        c.running = true;
        c.events.push('start');
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        c.running = false;
        c.events.push('stop');
      },
    });
    contenders.push(c);
    return c;
  }

  const leaders = () => contenders.filter((c) => c.running);

  it('lets exactly one of three contenders work, and hands over when it stops', async () => {
    await Promise.all([contender('a'), contender('b'), contender('c')]);
    const first = await waitFor(() => leaders().length === 1 && leaders()[0], 5000, 'a leader');
    // Stays one for a while: nobody else starts.
    await new Promise((r) => setTimeout(r, 800));
    expect(leaders()).toEqual([first]);
    expect(contenders.filter((c) => c !== first).every((c) => c.events.length === 0)).toBe(true);

    const handoverStart = Date.now();
    await first.singleton.close();
    expect(first.events).toEqual(['start', 'stop']);
    const second = await waitFor(() => leaders().length === 1 && leaders()[0], 5000, 'a new leader');
    expect(second).not.toBe(first);
    expect(Date.now() - handoverStart).toBeLessThan(2000);
  });

  it('stops the work of a leader whose database connection is killed, and another takes over', async () => {
    await Promise.all([contender('a'), contender('b')]);
    const first = await waitFor(() => leaders().length === 1 && leaders()[0], 5000, 'a leader');
    await server.sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'brevis-test-' || $1 || ':singleton%'", [first.name]);
    await waitFor(() => !first.running, 5000, 'the old leader to stop working');
    const next = await waitFor(() => leaders().length === 1 && leaders()[0], 5000, 'a leader after the kill');
    // Either may win the lock again, but never both at once.
    expect(leaders()).toHaveLength(1);
    expect(first.events.slice(0, 2)).toEqual(['start', 'stop']);
    expect(next.running).toBe(true);
  });

  it('closing while the lock is being taken neither starts the work nor hangs, and leaves the lock free', async () => {
    const db = await PgDb.open(url, { applicationName: 'brevis-test-racer' });
    const events: string[] = [];
    let closing: Promise<void> | undefined;
    // The real database, with close() called at the moment PostgreSQL has granted the lock
    // and before the answer is seen: the window a close from another part of the CA can hit.
    const racing = afterDedicatedQuery(db, /pg_try_advisory_lock/, () => (closing ??= singleton.close()));
    const singleton: Singleton = new Singleton({
      db: racing,
      logger,
      name: 'test',
      retryMs: 100,
      pingMs: 200,
      work: async (signal) => {
        events.push('start');
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        events.push('stop');
      },
    });
    try {
      await waitFor(() => closing !== undefined, 5000, 'the lock to be taken');
      await settlesWithin(closing!, 5000, 'close()');
      expect(events).toEqual([]);
      expect(singleton.leading).toBe(false);
      // The lock is free: a contender that arrives now leads.
      const next = await contender('next');
      await waitFor(() => next.running, 5000, 'the next contender to lead');
    } finally {
      await db.close();
    }
  });

  it('never has two contenders working at the same moment through repeated handovers', async () => {
    await Promise.all([contender('a'), contender('b'), contender('c')]);
    let overlaps = 0;
    const probe = setInterval(() => {
      if (leaders().length > 1) overlaps++;
    }, 5);
    try {
      for (let i = 0; i < 4; i++) {
        const leader = await waitFor(() => leaders().length === 1 && leaders()[0], 5000, `leader ${i}`);
        await server.sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'brevis-test-' || $1 || ':singleton%'", [leader.name]);
        await waitFor(() => !leader.running, 5000, 'the leader to stop');
      }
    } finally {
      clearInterval(probe);
    }
    expect(overlaps).toBe(0);
  });
});
