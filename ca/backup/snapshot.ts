/**
 * A consistent snapshot of a running CA: the SQLite database copied with
 * `VACUUM INTO` while holding the store's connection (so no write of this
 * process lands half-way), and the CA key files read under the same hold.
 *
 * Why the key files are consistent with the database copy: the authority
 * life cycle saves a key file before it commits the record that names it,
 * and deletes a key file only after no committed record names it. So every
 * key the copied database refers to is on disk while we hold the store;
 * an extra key file (saved, not yet committed) is harmless, and the life
 * cycle's crash recovery removes it after a restore.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { CaError } from '../errors.js';
import { SqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';

export interface CaSnapshot {
  db: Buffer;
  /** `keys/<ref>.key` -> the key file's bytes (already encrypted with the KEK). */
  keys: Map<string, Buffer>;
}

/** Takes the snapshot; `workDir` (in the data directory) holds the database copy for a moment. */
export async function takeSnapshot(store: Store, keysDir: string, workDir: string): Promise<CaSnapshot> {
  if (!(store instanceof SqliteStore)) {
    throw new CaError('FAILED_PRECONDITION', 'backups cover the embedded SQLite datastore; back up a PostgreSQL datastore with pg_dump: its CA keys are in the database, sealed with the KEK, which you keep separately');
  }
  const tmp = await fsp.mkdtemp(path.join(workDir, '.backup-'));
  const copy = path.join(tmp, 'brevis.db');
  try {
    return await store.db.exclusive(async (s) => {
      await s.run('VACUUM INTO ?', [copy]);
      const keys = new Map<string, Buffer>();
      for (const name of (await fsp.readdir(keysDir)).sort()) {
        if (!name.endsWith('.key') || name.startsWith('.')) continue;
        keys.set(`keys/${name}`, await fsp.readFile(path.join(keysDir, name)));
      }
      return { db: await fsp.readFile(copy), keys };
    });
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}
