/**
 * The file layout for software that cannot speak the Workload API (nginx,
 * openssl): `svid.pem` (leaf then intermediates), `svid.key` (PKCS#8 PEM,
 * mode 0600) and `bundle.pem` (the trust domain's roots). Used by
 * `brevis-ca x509 mint` and `brevis-agent api fetch|watch`.
 *
 * Each file is replaced atomically (write to a temp file in the same
 * directory, fsync, rename), so a reader never sees a half-written file.
 * The key is renamed first and the certificate last, so a reader that keys
 * off svid.pem changing never pairs a new certificate with an old key.
 */
import { mkdirSync, openSync, writeSync, fsyncSync, closeSync, renameSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { certsToPem, pemEncode } from './pem.js';

export const SVID_FILE = 'svid.pem';
export const KEY_FILE = 'svid.key';
export const BUNDLE_FILE = 'bundle.pem';


/** Writes `data` to `file` atomically with `mode`. */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

export interface SvidFiles {
  /** DER, leaf first. */
  chain: Uint8Array[];
  /** PKCS#8 DER. */
  key: Uint8Array;
  /** Root certificates, DER. */
  bundle: Uint8Array[];
}

export function writeSvidFiles(dir: string, files: SvidFiles): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(path.join(dir, KEY_FILE), pemEncode('PRIVATE KEY', files.key), 0o600);
  writeFileAtomic(path.join(dir, BUNDLE_FILE), certsToPem(files.bundle), 0o644);
  writeFileAtomic(path.join(dir, SVID_FILE), certsToPem(files.chain), 0o644);
}
