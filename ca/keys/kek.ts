/**
 * The key-encryption key (KEK) that protects CA private keys at rest. It
 * is 32 random bytes written as 64 hex characters, from (in order):
 * `--kek-file FILE`, the environment variable BREVIS_KEK, a passphrase
 * (`--kek-passphrase-env`), or else a file the CA generates beside its keys
 * (`<data-dir>/kek`, mode 0600), which protects against a stolen key file
 * but not a stolen data directory, so the CA warns at every start.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { CaError } from '../errors.js';
import type { KekSource } from './keystore.js';

/** The environment variable holding a KEK as 64 hex characters. */
export const KEK_ENV = 'BREVIS_KEK';
/** Name of the generated KEK in the data directory. */
export const GENERATED_KEK_FILE = 'kek';

/** How the KEK was configured (never the KEK itself). */
export type KekOrigin = 'file' | 'env' | 'passphrase' | 'generated' | 'data-dir';

/** The KEK as configured, before it is read: what CaConfig holds. */
export type KekSetting = { keyFile: string } | { key: Uint8Array } | { passphrase: string } | null;

export interface ResolvedKek {
  source: KekSource;
  origin: KekOrigin;
  /** The file it was read from or written to, when there is one. */
  file?: string;
}

/**
 * Parses a KEK written as 64 hex characters (surrounding whitespace and a
 * trailing newline are fine). `what` names the source in errors; the
 * value itself never appears in one.
 */
export function parseKekHex(text: string, what: string): Buffer {
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new CaError(
      'FAILED_PRECONDITION',
      `${what} must hold a key-encryption key of 64 hex characters (32 random bytes; make one with: openssl rand -hex 32)`,
    );
  }
  return Buffer.from(hex, 'hex');
}

/**
 * Reads a file that holds a secret, refusing one that is not a regular
 * file or that group or others may access.
 */
export async function readSecretFile(file: string, what: string): Promise<Buffer> {
  let fh;
  try {
    fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CaError('NOT_FOUND', `${what} ${file} does not exist`);
    if (code === 'ELOOP') throw new CaError('FAILED_PRECONDITION', `${what} ${file} is a symbolic link; give the file itself`);
    throw new CaError('FAILED_PRECONDITION', `cannot read ${what} ${file}: ${code ?? (e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new CaError('FAILED_PRECONDITION', `${what} ${file} is not a regular file`);
    const mode = st.mode & 0o777;
    if (mode & 0o077) {
      throw new CaError(
        'FAILED_PRECONDITION',
        `${what} ${file} is accessible by group or others (mode ${mode.toString(8).padStart(4, '0')}); refusing to start: run chmod 600 ${file}`,
      );
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/**
 * Turns the configured KEK into what the KeyStore needs, generating
 * `<dataDir>/kek` when nothing is configured and no encrypted key exists
 * yet. `hasEncryptedKeys` says whether keys encrypted under some KEK are
 * already on disk: then a missing KEK is an error, not a reason to make a
 * new one that could not decrypt them.
 */
export async function resolveKek(setting: KekSetting, dataDir: string, hasEncryptedKeys: boolean): Promise<ResolvedKek> {
  if (setting && 'keyFile' in setting) {
    const bytes = await readSecretFile(setting.keyFile, 'key-encryption key file');
    try {
      return { source: { key: parseKekHex(bytes.toString('latin1'), `key-encryption key file ${setting.keyFile}`) }, origin: 'file', file: setting.keyFile };
    } finally {
      bytes.fill(0);
    }
  }
  if (setting && 'key' in setting) return { source: { key: Buffer.from(setting.key) }, origin: 'env' };
  if (setting && 'passphrase' in setting) return { source: { passphrase: setting.passphrase }, origin: 'passphrase' };

  const file = path.join(dataDir, GENERATED_KEK_FILE);
  let bytes: Buffer | null = null;
  try {
    bytes = await readSecretFile(file, 'key-encryption key file');
  } catch (e) {
    if (!(e instanceof CaError && e.code === 'NOT_FOUND')) throw e;
  }
  if (bytes) {
    try {
      return { source: { key: parseKekHex(bytes.toString('latin1'), `key-encryption key file ${file}`) }, origin: 'data-dir', file };
    } finally {
      bytes.fill(0);
    }
  }
  if (hasEncryptedKeys) {
    throw new CaError(
      'FAILED_PRECONDITION',
      `the CA keys in ${path.join(dataDir, 'keys')} are encrypted but no key-encryption key is configured: pass --kek-file FILE or set ${KEK_ENV}`,
    );
  }
  const key = randomBytes(32);
  const fh = await fsp.open(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await fh.writeFile(`${key.toString('hex')}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { source: { key }, origin: 'generated', file };
}
