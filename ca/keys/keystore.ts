import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import type { ScryptOptions } from 'node:crypto';
import { link, mkdir, open, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CaError } from '../errors.js';
import { exportPkcs8, signerFromPkcs8 } from './signer.js';
import type { LocalSigner } from './signer.js';

/**
 * Where the key-encryption key (KEK) comes from. The passphrase, the bytes
 * of `keyFile`, or `key` (already read and checked, see ca/keys/kek.ts) are
 * the scrypt input; a key file must be mode 0600 or stricter.
 */
export type KekSource = { passphrase: string } | { keyFile: string } | { key: Uint8Array };

export interface KeyStoreOptions {
  /** Directory holding one file per key; created with mode 0700. */
  dir: string;
  /** Encrypt keys at rest. Without it keys are plain PKCS#8 PEM (still mode 0600). */
  kek?: KekSource;
}

/*
 * Encrypted key file, version 1 (all integers unsigned, one byte):
 *   magic "BRVSKEY" (7) | version 0x01 | log2(N) | r | p | salt (16) | iv (12)
 *   | AES-256-GCM ciphertext of the PKCS#8 DER | tag (16)
 * The AES key is scrypt(KEK, salt, N, r, p). The additional authenticated
 * data is the header followed by the key's ref, so neither the parameters
 * nor the file name can be swapped without detection.
 */
const MAGIC = Buffer.from('BRVSKEY', 'ascii');
const VERSION = 1;
const HEADER_LENGTH = MAGIC.length + 1 + 3 + 16 + 12;
const TAG_LENGTH = 16;
const SCRYPT_LOG_N = 15;
/** A random 256-bit KEK needs no stretching: the lowest cost decrypt() accepts. */
const RANDOM_KEK_LOG_N = 10;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const PEM_LABEL = 'PRIVATE KEY';
const REF_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * CA private keys on disk, one file per key reference. Files are written
 * atomically with mode 0600 and never overwritten; a file that group or
 * others may access is refused on load. Nothing here logs, and no error
 * message carries key material or the KEK.
 */
export class KeyStore {
  readonly dir: string;
  readonly #kek: KekSource | undefined;
  #kekSecret: Promise<Buffer> | undefined;

  constructor(options: KeyStoreOptions) {
    this.dir = options.dir;
    this.#kek = options.kek;
    if (options.kek && 'passphrase' in options.kek && options.kek.passphrase.length === 0) {
      throw new CaError('INVALID_ARGUMENT', 'the key-encryption passphrase is empty');
    }
  }

  /** True when the store encrypts keys at rest. */
  get encrypted(): boolean {
    return this.#kek !== undefined;
  }

  /** The file that holds `ref`. */
  pathOf(ref: string): string {
    if (!REF_PATTERN.test(ref)) {
      throw new CaError('INVALID_ARGUMENT', `invalid key reference ${JSON.stringify(ref)}`);
    }
    return join(this.dir, `${ref}.key`);
  }

  /** True when a key file exists for `ref`. */
  async has(ref: string): Promise<boolean> {
    try {
      await stat(this.pathOf(ref));
      return true;
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw e;
    }
  }

  /**
   * Writes the signer's private key under `ref`: temp file (0600), fsync,
   * then a hard link to the final name, which fails rather than replace an
   * existing key (CaError 'ALREADY_EXISTS'), then fsync of the directory.
   */
  async save(ref: string, signer: LocalSigner): Promise<void> {
    const path = this.pathOf(ref);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const pkcs8 = exportPkcs8(signer);
    let contents: Buffer;
    try {
      contents = this.#kek ? await encrypt(pkcs8, ref, await this.#secret(), 'key' in this.#kek ? RANDOM_KEK_LOG_N : SCRYPT_LOG_N) : toPem(pkcs8);
    } finally {
      pkcs8.fill(0);
    }
    const tmp = join(this.dir, `.${ref}.${randomBytes(8).toString('hex')}.tmp`);
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.chmod(0o600); // the umask can only narrow the mode, but be explicit
      await fh.writeFile(contents);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, path);
    } catch (e) {
      if (errno(e) === 'EEXIST') throw new CaError('ALREADY_EXISTS', `CA key ${ref} already exists in ${this.dir}`);
      throw e;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    await syncDir(this.dir);
  }

  /**
   * Loads the key saved under `ref`. Refuses (CaError 'FAILED_PRECONDITION')
   * a file that group or others may access, an encrypted file without a KEK
   * or with the wrong one, and a plain file when a KEK is configured.
   */
  async load(ref: string): Promise<LocalSigner> {
    const path = this.pathOf(ref);
    const contents = await readPrivateFile(path, `CA key file ${path}`);
    let pkcs8: Buffer;
    if (contents.subarray(0, MAGIC.length).equals(MAGIC)) {
      if (!this.#kek) {
        throw new CaError('FAILED_PRECONDITION', `CA key ${ref} is encrypted but no key-encryption key is configured`);
      }
      pkcs8 = await decrypt(contents, ref, await this.#secret());
    } else {
      if (this.#kek) {
        throw new CaError(
          'FAILED_PRECONDITION',
          `CA key ${ref} is not encrypted but a key-encryption key is configured; refusing to use it`,
        );
      }
      pkcs8 = fromPem(contents, ref);
      contents.fill(0); // best effort: the PEM text is the key
    }
    try {
      return await signerFromPkcs8(pkcs8, `CA key ${ref}`);
    } finally {
      pkcs8.fill(0);
    }
  }

  /** Deletes the key file for `ref` (a retired key). False when there was none. */
  async remove(ref: string): Promise<boolean> {
    try {
      await unlink(this.pathOf(ref));
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw e;
    }
    await syncDir(this.dir);
    return true;
  }

  #secret(): Promise<Buffer> {
    const kek = this.#kek;
    if (!kek) throw new Error('no KEK configured');
    this.#kekSecret ??= (async () => {
      if ('passphrase' in kek) return Buffer.from(kek.passphrase, 'utf8');
      if ('key' in kek) return Buffer.from(kek.key);
      const bytes = await readPrivateFile(kek.keyFile, `key-encryption key file ${kek.keyFile}`);
      if (bytes.length === 0) {
        throw new CaError('FAILED_PRECONDITION', `key-encryption key file ${kek.keyFile} is empty`);
      }
      return bytes;
    })();
    // A failed read (missing file, bad mode) is reported again on the next call.
    this.#kekSecret.catch(() => {
      this.#kekSecret = undefined;
    });
    return this.#kekSecret;
  }
}

async function encrypt(pkcs8: Buffer, ref: string, secret: Buffer, logN: number): Promise<Buffer> {
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const header = Buffer.concat([MAGIC, Buffer.from([VERSION, logN, SCRYPT_R, SCRYPT_P]), salt, iv]);
  const key = await deriveKey(secret, salt, logN, SCRYPT_R, SCRYPT_P);
  try {
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.concat([header, Buffer.from(ref, 'utf8')]));
    const body = Buffer.concat([cipher.update(pkcs8), cipher.final()]);
    return Buffer.concat([header, body, cipher.getAuthTag()]);
  } finally {
    key.fill(0);
  }
}

async function decrypt(file: Buffer, ref: string, secret: Buffer): Promise<Buffer> {
  if (file.length < HEADER_LENGTH + TAG_LENGTH + 1) {
    throw new CaError('FAILED_PRECONDITION', `CA key ${ref} is truncated`);
  }
  const version = file[MAGIC.length];
  if (version !== VERSION) {
    throw new CaError('FAILED_PRECONDITION', `CA key ${ref} has unknown format version ${version}`);
  }
  const [logN, r, p] = [file[8]!, file[9]!, file[10]!];
  // Bounds keep a crafted file from asking scrypt for gigabytes of memory.
  if (logN < 10 || logN > 20 || r < 1 || r > 32 || p < 1 || p > 16) {
    throw new CaError('FAILED_PRECONDITION', `CA key ${ref} has out-of-range scrypt parameters`);
  }
  const header = file.subarray(0, HEADER_LENGTH);
  const salt = file.subarray(11, 27);
  const iv = file.subarray(27, HEADER_LENGTH);
  const body = file.subarray(HEADER_LENGTH, file.length - TAG_LENGTH);
  const tag = file.subarray(file.length - TAG_LENGTH);
  const key = await deriveKey(secret, salt, logN, r, p);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.concat([header, Buffer.from(ref, 'utf8')]));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch (cause) {
    // A wrong KEK and a modified file are indistinguishable under GCM.
    throw new CaError(
      'FAILED_PRECONDITION',
      `cannot decrypt CA key ${ref}: wrong key-encryption key? (or the file was modified)`,
      { cause },
    );
  } finally {
    key.fill(0);
  }
}

function deriveKey(secret: Buffer, salt: Buffer, logN: number, r: number, p: number): Promise<Buffer> {
  const N = 2 ** logN;
  const options: ScryptOptions = { N, r, p, maxmem: 128 * N * r * p + 16 * 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, 32, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Reads a secret file, refusing it when it is not a regular file or group/others have any access. */
async function readPrivateFile(path: string, what: string): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if (errno(e) === 'ENOENT') throw new CaError('NOT_FOUND', `${what} does not exist`);
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new CaError('FAILED_PRECONDITION', `${what} is not a regular file`);
    const mode = st.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new CaError(
        'FAILED_PRECONDITION',
        `${what} is accessible by group or others (mode ${mode.toString(8).padStart(4, '0')}); ` +
          `refusing to use it: run chmod 600 on it`,
      );
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

function toPem(der: Buffer): Buffer {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return Buffer.from(`-----BEGIN ${PEM_LABEL}-----\n${lines.join('\n')}\n-----END ${PEM_LABEL}-----\n`);
}

function fromPem(contents: Buffer, ref: string): Buffer {
  const m = /^-----BEGIN PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END PRIVATE KEY-----\s*$/.exec(
    contents.toString('latin1'),
  );
  if (!m) throw new CaError('FAILED_PRECONDITION', `CA key ${ref} is neither an encrypted key nor PKCS#8 PEM`);
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

/** fsyncs a directory, so that a file created or renamed in it survives a power cut. */
export async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** What the CA needs from a key store: this file store and ca/keys/postgres-keystore.ts both fit. */
export type CaKeyStore = Pick<KeyStore, 'save' | 'load' | 'remove'>;

/** A KEK already in memory (what ca/keys/kek.ts resolves a key file or BREVIS_KEK to), or a passphrase. */
export type KekInMemory = { key: Uint8Array } | { passphrase: string };

/**
 * The envelope of an encrypted key file, for key stores that keep CA keys
 * elsewhere (ca/keys/postgres-keystore.ts keeps them in a table): `seal`
 * encrypts PKCS#8 DER bound to `ref` under the KEK exactly as `save` does,
 * `open` reverses it with the same checks as `load`.
 */
export const keyEnvelope = {
  seal(pkcs8: Buffer, ref: string, kek: KekInMemory): Promise<Buffer> {
    return encrypt(pkcs8, ref, kekBytes(kek), 'key' in kek ? RANDOM_KEK_LOG_N : SCRYPT_LOG_N);
  },
  open(sealed: Buffer, ref: string, kek: KekInMemory): Promise<Buffer> {
    if (!sealed.subarray(0, MAGIC.length).equals(MAGIC)) throw new CaError('FAILED_PRECONDITION', `CA key ${ref} is not an encrypted key`);
    return decrypt(sealed, ref, kekBytes(kek));
  },
};

function kekBytes(kek: KekInMemory): Buffer {
  return 'key' in kek ? Buffer.from(kek.key) : Buffer.from(kek.passphrase, 'utf8');
}
