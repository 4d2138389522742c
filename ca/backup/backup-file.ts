/**
 * The backup file: a small readable header, then the CA's files encrypted
 * with a key derived from its key-encryption key (KEK).
 *
 *   "BRVSBAK1" | header length (u32 BE) | header (JSON, UTF-8)
 *   | AES-256-GCM ciphertext of the archive | tag (16)
 *
 * The header says what the file is and how its key is derived (scrypt
 * parameters and salt, the GCM nonce); it is the additional authenticated
 * data, so none of it can be altered unnoticed. The archive is a list of
 * (name, bytes) entries: `manifest.json`, `brevis.db`, `keys/<ref>.key`.
 * The KEK itself is never in a backup: keep it separately.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt, type ScryptOptions } from 'node:crypto';
import { CaError } from '../errors.js';
import type { KekSource } from '../keys/keystore.js';

const MAGIC = Buffer.from('BRVSBAK1', 'ascii');
const TAG_LENGTH = 16;
const MAX_HEADER_BYTES = 4096;
/** A random 256-bit KEK needs no stretching; a passphrase does (same costs as ca/keys/keystore.ts). */
const LOG_N = { key: 10, passphrase: 15 } as const;

export interface BackupManifest {
  format: 1;
  trustDomain: string;
  /** Milliseconds since the epoch. */
  createdAtMs: number;
  /** Where the CA's KEK came from: `generated`/`data-dir` means a `<data-dir>/kek` file, restored with the backup. */
  kekOrigin: string;
  /** Names of the other entries, for humans and checks. */
  files: string[];
}

export interface BackupContents {
  manifest: BackupManifest;
  /** `brevis.db` and `keys/<ref>.key`. */
  files: Map<string, Buffer>;
}

interface Header {
  format: 'brevis-ca-backup';
  version: 1;
  kdf: { alg: 'scrypt'; logN: number; r: number; p: number; salt: string };
  cipher: { alg: 'aes-256-gcm'; iv: string };
}

/** The secret bytes a KEK stands for (the scrypt input). */
function kekSecret(kek: KekSource): { secret: Buffer; logN: number } {
  if ('key' in kek) return { secret: Buffer.from(kek.key), logN: LOG_N.key };
  if ('passphrase' in kek) return { secret: Buffer.from(kek.passphrase, 'utf8'), logN: LOG_N.passphrase };
  throw new TypeError('resolve a KEK file before using it for backups');
}

function derive(secret: Buffer, salt: Buffer, logN: number, r: number, p: number): Promise<Buffer> {
  const N = 2 ** logN;
  const options: ScryptOptions = { N, r, p, maxmem: 128 * N * r * p + 16 * 1024 * 1024 };
  return new Promise((resolve, reject) => scrypt(secret, salt, 32, options, (err, key) => (err ? reject(err) : resolve(key))));
}

function archive(entries: Array<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  parts.push(u32(entries.length));
  for (const [name, data] of entries) {
    const n = Buffer.from(name, 'utf8');
    parts.push(u32(n.length), n, u32(data.length), data);
  }
  return Buffer.concat(parts);
}

function unarchive(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  const u32 = () => {
    if (pos + 4 > buf.length) throw new Error('truncated');
    const v = buf.readUInt32BE(pos);
    pos += 4;
    return v;
  };
  const take = (n: number) => {
    if (pos + n > buf.length) throw new Error('truncated');
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const count = u32();
  for (let i = 0; i < count; i++) {
    const name = take(u32()).toString('utf8');
    out.set(name, Buffer.from(take(u32())));
  }
  if (pos !== buf.length) throw new Error('trailing bytes');
  return out;
}

/** Builds the encrypted backup file. */
export async function sealBackup(contents: BackupContents, kek: KekSource): Promise<Buffer> {
  const { secret, logN } = kekSecret(kek);
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const header: Header = {
    format: 'brevis-ca-backup',
    version: 1,
    kdf: { alg: 'scrypt', logN, r: 8, p: 1, salt: salt.toString('base64') },
    cipher: { alg: 'aes-256-gcm', iv: iv.toString('base64') },
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(headerBytes.length);
  const aad = Buffer.concat([MAGIC, length, headerBytes]);
  const key = await derive(secret, salt, logN, 8, 1);
  secret.fill(0);
  const plain = archive([['manifest.json', Buffer.from(JSON.stringify(contents.manifest), 'utf8')], ...contents.files]);
  try {
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([aad, body, cipher.getAuthTag()]);
  } finally {
    key.fill(0);
    plain.fill(0);
  }
}

/**
 * Decrypts and checks a backup file. Throws CaError FAILED_PRECONDITION
 * saying what is wrong: not a backup, an unknown version, or (GCM cannot
 * tell them apart) a wrong KEK or a damaged file.
 */
export async function openBackup(file: Buffer, kek: KekSource): Promise<BackupContents> {
  const bad = (why: string) => new CaError('FAILED_PRECONDITION', why);
  if (file.length < MAGIC.length + 4 || !file.subarray(0, MAGIC.length).equals(MAGIC)) throw bad('this is not a Brevis CA backup file');
  const headerLength = file.readUInt32BE(MAGIC.length);
  if (headerLength > MAX_HEADER_BYTES || MAGIC.length + 4 + headerLength + TAG_LENGTH > file.length) throw bad('the backup file is truncated or damaged');
  const aad = file.subarray(0, MAGIC.length + 4 + headerLength);
  let header: Header;
  try {
    header = JSON.parse(aad.subarray(MAGIC.length + 4).toString('utf8')) as Header;
  } catch {
    throw bad('the backup file header is damaged');
  }
  if (header?.format !== 'brevis-ca-backup') throw bad('the backup file header is damaged');
  if (header.version !== 1) throw bad(`unsupported backup format ${JSON.stringify(header.version)}: restore it with the Brevis version that made it`);
  const { logN, r, p } = header.kdf ?? {};
  // Bounds keep a crafted header from asking scrypt for gigabytes of memory.
  if (header.kdf?.alg !== 'scrypt' || header.cipher?.alg !== 'aes-256-gcm' || !(logN >= 10 && logN <= 20 && r >= 1 && r <= 32 && p >= 1 && p <= 16)) {
    throw bad('the backup file header has unsupported or out-of-range parameters');
  }
  const { secret } = kekSecret(kek);
  const key = await derive(secret, Buffer.from(header.kdf.salt, 'base64'), logN, r, p);
  secret.fill(0);
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(header.cipher.iv, 'base64'));
    decipher.setAAD(aad);
    decipher.setAuthTag(file.subarray(file.length - TAG_LENGTH));
    plain = Buffer.concat([decipher.update(file.subarray(aad.length, file.length - TAG_LENGTH)), decipher.final()]);
  } catch {
    throw bad('cannot decrypt the backup: wrong key-encryption key (give the KEK of the CA that made it), or the file is damaged');
  } finally {
    key.fill(0);
  }
  let files: Map<string, Buffer>;
  try {
    files = unarchive(plain);
  } catch {
    throw bad('the backup archive is damaged');
  }
  const manifestBytes = files.get('manifest.json');
  files.delete('manifest.json');
  const manifest = manifestBytes ? (JSON.parse(manifestBytes.toString('utf8')) as BackupManifest) : undefined;
  if (!manifest || manifest.format !== 1 || !files.has('brevis.db')) throw bad('the backup archive lacks its manifest or database');
  for (const name of files.keys()) {
    if (name !== 'brevis.db' && !/^keys\/[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.key$/.test(name)) throw bad(`the backup archive holds an unexpected entry ${JSON.stringify(name.slice(0, 80))}`);
  }
  return { manifest, files };
}
