/**
 * The cross-server change listener closes promptly even when close() comes
 * while its LISTEN is still on the way to PostgreSQL.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterChanges } from '../ca/ha/cluster-changes.js';
import { PgDb } from '../ca/store/postgres-db.js';
import { openPostgresStore } from '../ca/store/postgres.js';
import { afterDedicatedQuery, settlesWithin, startTestPostgres, type TestPostgres } from './support/postgres.js';
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
    const racing = afterDedicatedQuery(db, /^LISTEN/, () => (closing ??= changes.close()));
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
      await settlesWithin(closing!, 5000, 'close()');
      const listening = await server.sql(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'brevis-test-changes:changes%'", []);
      expect(listening).toEqual([{ n: 0 }]);
      expect(refreshes).toBeLessThanOrEqual(1);
    } finally {
      await db.close();
    }
  });
});
