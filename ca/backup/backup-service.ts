/**
 * BackupService on the admin socket: takes a snapshot of the running CA,
 * seals it with the KEK and streams the file in chunks. Each backup is an
 * audit record (its size and SHA-256, never its contents).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { BackupServiceServer, CreateBackupRequest, CreateBackupResponse } from '../../proto/gen/brevis/ca/v1/backup.js';
import type { Clock } from '../../spiffe/clock.js';
import { toServiceError, type ErrorLogger } from '../api/errors.js';
import type { KekSource } from '../keys/keystore.js';
import type { AuditRecord, Store } from '../store/store.js';
import { sealBackup } from './backup-file.js';
import { takeSnapshot, type CaSnapshot } from './snapshot.js';

/** Chunk size of the stream, well under the 8 MiB message limit. */
export const BACKUP_CHUNK_BYTES = 1024 * 1024;

export interface BackupServiceDeps {
  trustDomain: string;
  kek: KekSource;
  kekOrigin: string;
  snapshot(): Promise<CaSnapshot>;
  audit(record: Omit<AuditRecord, 'timeMs' | 'caller'>): Promise<void>;
  now(): Date;
  logger: ErrorLogger & { info(obj: object, msg: string): void };
}

/** Builds one backup file of the running CA. */
export async function createBackupFile(deps: BackupServiceDeps): Promise<Buffer> {
  const snap = await deps.snapshot();
  const files = new Map<string, Buffer>([['brevis.db', snap.db], ...snap.keys]);
  return sealBackup(
    {
      manifest: { format: 1, trustDomain: deps.trustDomain, createdAtMs: deps.now().getTime(), kekOrigin: deps.kekOrigin, files: [...files.keys()] },
      files,
    },
    deps.kek,
  );
}

export function createBackupService(deps: BackupServiceDeps): BackupServiceServer {
  return {
    createBackup: (call: grpc.ServerWritableStream<CreateBackupRequest, CreateBackupResponse>) => {
      void (async () => {
        const file = await createBackupFile(deps);
        const sha256 = createHash('sha256').update(file).digest('hex');
        await deps.audit({ action: 'backup.create', spiffeId: null, serial: null, notAfter: null, outcome: 'success', detail: `${file.length} bytes; sha256 ${sha256}` });
        deps.logger.info({ bytes: file.length, sha256 }, 'backup taken');
        for (let i = 0; i < file.length && !call.cancelled; i += BACKUP_CHUNK_BYTES) {
          const chunk = file.subarray(i, i + BACKUP_CHUNK_BYTES);
          if (!call.write({ chunk })) {
            await new Promise<void>((resolve) => {
              for (const ev of ['drain', 'cancelled', 'close']) call.once(ev, () => resolve());
            });
          }
        }
        if (!call.cancelled) call.end();
      })().catch((e: unknown) => {
        if (!call.cancelled) call.emit('error', toServiceError(e, deps.logger));
      });
    },
  };
}

/** BackupService for a running CA: snapshots `store` and `<dataDir>/keys`, sealed with the CA's KEK. */
export function caBackupService(o: {
  trustDomain: string;
  dataDir: string;
  kek: { source: KekSource; origin: string };
  store: Store;
  clock: Clock;
  logger: BackupServiceDeps['logger'];
  caller: string;
}): BackupServiceServer {
  return createBackupService({
    trustDomain: o.trustDomain,
    kek: o.kek.source,
    kekOrigin: o.kek.origin,
    snapshot: () => takeSnapshot(o.store, path.join(o.dataDir, 'keys'), o.dataDir),
    audit: (r) => o.store.appendAudit([{ timeMs: o.clock.now().getTime(), caller: o.caller, ...r }]),
    now: () => o.clock.now(),
    logger: o.logger,
  });
}
