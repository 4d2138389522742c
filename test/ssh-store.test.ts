import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Db } from '../ca/store/db.js';
import { MIGRATIONS, migrate } from '../ca/store/migrations.js';
import { openSqliteStore, type SqliteStore } from '../ca/store/sqlite.js';

// SSH settings round trips and corrupt SSH JSON: test/support/store-contract.ts.
describe('SQLite store: SSH settings', () => {
  let dir: string;
  let file: string;
  let store: SqliteStore | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-sshstore-'));
    file = path.join(dir, 'ca.sqlite');
  });
  afterEach(async () => {
    await store?.close().catch(() => undefined);
    store = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('migrates a database written before SSH support, keeping its rows', async () => {
    const db = await Db.open(file, { busyTimeoutMs: 1000 });
    try {
      await migrate(db, () => 1, MIGRATIONS.filter((m) => m.version === 1));
      await db.exclusive(async (s) => {
        await s.run(`INSERT INTO entries (id, spiffe_id, parent_id, selectors, x509_svid_ttl, dns_names, hint, admin, expires_at, revision, created_at)
          VALUES ('old', 'spiffe://example.org/old', 'spiffe://example.org/brevis/agent/a', '[]', 0, '[]', '', 0, NULL, 1, 5)`);
        await s.run(`INSERT INTO agents (agent_id, attestation_type, serial, expires_at, selectors, banned, created_at, last_seen_at)
          VALUES ('spiffe://example.org/brevis/agent/a', 'join_token', 'ff', 9, '[]', 0, 1, 1)`);
        await s.run(`INSERT INTO join_tokens (id, secret_hash, agent_id, expires_at, used_at, created_at) VALUES ('t', 'h', 'spiffe://example.org/brevis/agent/t', 9999, NULL, 1)`);
      });
    } finally {
      await db.close();
    }
    store = await openSqliteStore(file);
    expect(await store.getEntry('old')).toMatchObject({ id: 'old', spiffeId: 'spiffe://example.org/old' });
    expect(await store.getEntry('old')).not.toHaveProperty('ssh');
    expect(await store.getAgent('spiffe://example.org/brevis/agent/a')).toMatchObject({ serial: 'ff' });
    expect(await store.consumeJoinToken('h', 10)).toMatchObject({ ok: true });
  });

});
