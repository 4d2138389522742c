/**
 * Key custody at CA start: CA private keys are always encrypted at rest.
 *
 * - Refuses to start when a file in `<data-dir>/keys` (or the KEK file)
 *   is accessible by group or others.
 * - Resolves the KEK (ca/keys/kek.ts), generating `<data-dir>/kek` when
 *   none is configured.
 * - Re-encrypts plain PEM keys left by an older version (or a CA run
 *   without a KEK) in place: each is written encrypted to a staging
 *   directory, then renamed over the plain file, so a crash leaves either
 *   the plain or the encrypted key, never neither.
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { CaError } from '../errors.js';
import { resolveKek, type KekSetting, type ResolvedKek } from './kek.js';
import { KeyStore, syncDir } from './keystore.js';

/** Magic of an encrypted key file (ca/keys/keystore.ts). */
const ENCRYPTED_MAGIC = Buffer.from('BRVSKEY', 'ascii');
const PLAIN_PREFIX = Buffer.from('-----BEGIN', 'ascii');
const STAGING = '.encrypting';

export interface KeyCustody {
  keys: KeyStore;
  kek: ResolvedKek;
  /** Key references re-encrypted at this start. */
  reencrypted: string[];
}

export interface KeyFileScan {
  encrypted: string[];
  plain: string[];
}

/**
 * Lists the key files in `keysDir` by kind, refusing (CaError
 * FAILED_PRECONDITION) any file group or others may access.
 */
export async function scanKeyFiles(keysDir: string): Promise<KeyFileScan> {
  const out: KeyFileScan = { encrypted: [], plain: [] };
  let names: string[];
  try {
    names = await fsp.readdir(keysDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  for (const name of names.sort()) {
    const file = path.join(keysDir, name);
    const st = await fsp.lstat(file);
    if (st.isDirectory()) continue;
    const mode = st.mode & 0o777;
    if (mode & 0o077) {
      throw new CaError(
        'FAILED_PRECONDITION',
        `CA key file ${file} is accessible by group or others (mode ${mode.toString(8).padStart(4, '0')}); refusing to start: run chmod 600 ${file}`,
      );
    }
    if (!st.isFile() || !name.endsWith('.key') || name.startsWith('.')) continue;
    const head = await readHead(file, ENCRYPTED_MAGIC.length + 3);
    const ref = name.slice(0, -'.key'.length);
    if (head.subarray(0, ENCRYPTED_MAGIC.length).equals(ENCRYPTED_MAGIC)) out.encrypted.push(ref);
    else if (head.subarray(0, PLAIN_PREFIX.length).equals(PLAIN_PREFIX)) out.plain.push(ref);
    else throw new CaError('FAILED_PRECONDITION', `CA key file ${file} is neither an encrypted key nor PKCS#8 PEM`);
  }
  return out;
}

/** Opens the CA's KeyStore with its KEK, after the checks and migration above. */
export async function openKeyCustody(dataDir: string, kek: KekSetting): Promise<KeyCustody> {
  const keysDir = path.join(dataDir, 'keys');
  await fsp.mkdir(keysDir, { recursive: true, mode: 0o700 });
  const dirMode = (await fsp.stat(keysDir)).mode & 0o777;
  if (dirMode & 0o077) await fsp.chmod(keysDir, 0o700);
  await fsp.rm(path.join(keysDir, STAGING), { recursive: true, force: true });
  const scan = await scanKeyFiles(keysDir);
  const resolved = await resolveKek(kek, dataDir, scan.encrypted.length > 0);
  const keys = new KeyStore({ dir: keysDir, kek: resolved.source });
  const reencrypted: string[] = [];
  if (scan.plain.length > 0) {
    const plain = new KeyStore({ dir: keysDir });
    const staging = new KeyStore({ dir: path.join(keysDir, STAGING), kek: resolved.source });
    for (const ref of scan.plain) {
      await staging.save(ref, await plain.load(ref));
      await fsp.rename(staging.pathOf(ref), keys.pathOf(ref));
      reencrypted.push(ref);
    }
    await syncDir(keysDir);
    await fsp.rm(path.join(keysDir, STAGING), { recursive: true, force: true });
  }
  return { keys, kek: resolved, reencrypted };
}

async function readHead(file: string, n: number): Promise<Buffer> {
  const fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The slice of a logger key custody reports to (pino fits). */
export interface CustodyLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Says where the KEK comes from (never the KEK) and warns, at every start, when it lives beside the keys. */
export function logKeyCustody(custody: KeyCustody, logger: CustodyLogger): void {
  const { kek, reencrypted } = custody;
  if (kek.origin === 'generated' || kek.origin === 'data-dir') {
    logger.warn(
      { kekFile: kek.file, generated: kek.origin === 'generated' },
      'the key-encryption key lives beside the CA keys it protects: whoever copies the data directory gets the keys; ' +
        'keep it elsewhere with --kek-file FILE or BREVIS_KEK (64 hex characters)',
    );
  } else {
    logger.info({ kekOrigin: kek.origin, ...(kek.file ? { kekFile: kek.file } : {}) }, 'CA keys are encrypted at rest');
  }
  if (reencrypted.length > 0) logger.warn({ keys: reencrypted }, 'CA keys stored unencrypted were re-encrypted with the key-encryption key');
}
