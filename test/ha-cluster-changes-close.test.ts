/**
 * The cross-server change listener closes promptly even when close() comes
 * while its LISTEN is still on the way to PostgreSQL.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterChanges } from '../ca/ha/cluster-changes.js';
import { PgDb } from '../ca/store/postgres-db.js';
import { openPostgresStore } from '../ca/store/postgres.js';
import { startTestPostgres, type TestPostgres } from './support/postgres.js';
import { waitFor } from './support/agent-harness.js';

const logger = pino({ level: process.env.BREVIS_TEST_LOG ?? 'silent' });

describe('cluster change notifications through PostgreSQL', () => {
  let server: TestPostgres;
  let url: string;
  beforeAll(async () => {
    server = await startTestPostgres();
    url = await server.createDatabase();
    await (await openPostgresStore(url)).close();
  });
  afterAll(() => server.stop());

  it('closes without hanging when close() comes while LISTEN is in flight, and leaves no listening session', async () => {
    const db = await PgDb.open(url, { applicationName: 'brevis-test-changes' });
    let closing: Promise<void> | undefined;
    // The real database, with close() called once LISTEN has been answered and before the listener sees it.
    const racing = {
      run: (sql: string, params: unknown[]) => db.run(sql, params),
      connectDedicated: async (purpose: string, timeoutMs?: number) => {
        const client = await db.connectDedicated(purpose, timeoutMs);
        const query = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
        (client as unknown as { query: (...a: unknown[]) => Promise<unknown> }).query = async (...a: unknown[]) => {
          const r = await query(...a);
          if (String(a[0]).startsWith('LISTEN')) closing ??= changes.close();
          return r;
        };
        return client;
      },
    } as unknown as PgDb;
    let refreshes = 0;
    const changes: ClusterChanges = new ClusterChanges({
      db: racing,
      logger,
      refreshLifecycle: async () => {
        refreshes++;
        return false;
      },
      lifecycleVersion: async () => 'v1',
      hub: { publish: () => undefined, tap: () => () => undefined },
      pollMs: 100,
    });
    try {
      await waitFor(() => closing !== undefined, 5000, 'LISTEN to be sent');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([closing, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('close() hung')), 5000)))]).finally(() => clearTimeout(timer));
      const listening = await server.sql(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'brevis-test-changes:changes%'", []);
      expect(listening).toEqual([{ n: 0 }]);
      expect(refreshes).toBeLessThanOrEqual(1);
    } finally {
      await db.close();
    }
  });
});
