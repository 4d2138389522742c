/**
 * Restores a backup into a new data directory: refuses one that exists
 * and is not empty, decrypts with the KEK of the CA that made the backup,
 * and writes the database and the (still encrypted) key files with the
 * modes the CA insists on. When that CA kept its KEK in its data
 * directory, the KEK goes back there too, so the restored CA starts the
 * same way; otherwise start it with the same --kek-file or BREVIS_KEK.
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { CaError } from '../errors.js';
import { GENERATED_KEK_FILE } from '../keys/kek.js';
import { syncDir, type KekSource } from '../keys/keystore.js';
import { openBackup, type BackupManifest } from './backup-file.js';

export interface RestoreResult {
  manifest: BackupManifest;
  /** Files written, relative to the data directory. */
  written: string[];
}

export async function restoreBackup(from: string, dataDir: string, kek: KekSource): Promise<RestoreResult> {
  const target = path.resolve(dataDir);
  let existing: string[] | null = null;
  try {
    existing = await fsp.readdir(target);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new CaError('FAILED_PRECONDITION', `${target} exists and is not a directory`);
    if (code !== 'ENOENT') throw e;
  }
  if (existing && existing.length > 0) {
    throw new CaError('FAILED_PRECONDITION', `refusing to restore into ${target}: it is not empty (restore into a new, empty data directory)`);
  }
  let file: Buffer;
  try {
    file = await fsp.readFile(from);
  } catch (e) {
    throw new CaError('NOT_FOUND', `cannot read the backup ${from}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const { manifest, files } = await openBackup(file, kek);

  await fsp.mkdir(path.join(target, 'keys'), { recursive: true, mode: 0o700 });
  await fsp.chmod(target, 0o700);
  const written: string[] = [];
  for (const [name, data] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    await writePrivate(path.join(target, name), data);
    written.push(name);
  }
  if ((manifest.kekOrigin === 'generated' || manifest.kekOrigin === 'data-dir') && 'key' in kek) {
    await writePrivate(path.join(target, GENERATED_KEK_FILE), Buffer.from(`${Buffer.from(kek.key).toString('hex')}\n`));
    written.push(GENERATED_KEK_FILE);
  }
  for (const dir of [path.join(target, 'keys'), target]) await syncDir(dir);
  return { manifest, written };
}

async function writePrivate(file: string, data: Buffer): Promise<void> {
  const fh = await fsp.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
