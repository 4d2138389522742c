/**
 * CA private keys in the shared PostgreSQL database (table `ca_keys`), so
 * that every CA server can sign with the authorities any of them created.
 * Each key is sealed with the key-encryption key that every server is
 * configured with (--kek-file or BREVIS_KEK; never stored in the
 * database), in the same envelope as a key file (keystore.ts), bound to
 * its ref: a row copied under another ref does not decrypt.
 *
 * Same operations and errors as the file KeyStore: a ref is never
 * overwritten (CaError ALREADY_EXISTS), a missing key is NOT_FOUND, a wrong
 * KEK or a modified row is FAILED_PRECONDITION. Nothing here logs, and no
 * error carries key material or the KEK.
 */
import { epochSeconds, realClock, type Clock } from '../../spiffe/clock.js';
import { CaError } from '../errors.js';
import type { PgDb } from '../store/postgres-db.js';
import type { PostgresStore } from '../store/postgres.js';
import { keyEnvelope, type CaKeyStore, type KekInMemory, type KekSource, type KeyStore } from './keystore.js';
import { exportPkcs8, signerFromPkcs8, type LocalSigner } from './signer.js';

const REF_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function checkRef(ref: string): void {
  if (!REF_PATTERN.test(ref)) throw new CaError('INVALID_ARGUMENT', `invalid key reference ${JSON.stringify(ref)}`);
}

export interface PostgresKeyStoreOptions {
  db: PgDb;
  kek: KekInMemory;
  clock?: Clock;
}

export class PostgresKeyStore implements CaKeyStore {
  readonly #db: PgDb;
  readonly #kek: KekInMemory;
  readonly #clock: Clock;

  constructor(o: PostgresKeyStoreOptions) {
    if ('passphrase' in o.kek && o.kek.passphrase.length === 0) throw new CaError('INVALID_ARGUMENT', 'the key-encryption passphrase is empty');
    this.#db = o.db;
    this.#kek = o.kek;
    this.#clock = o.clock ?? realClock;
  }

  /** True when a key is stored under `ref`. */
  async has(ref: string): Promise<boolean> {
    checkRef(ref);
    return (await this.#db.query('SELECT 1 FROM ca_keys WHERE ref = $1', [ref])).length > 0;
  }

  /** Seals and stores the signer's private key under `ref`; refuses (ALREADY_EXISTS) to replace one. */
  async save(ref: string, signer: LocalSigner): Promise<void> {
    checkRef(ref);
    const pkcs8 = exportPkcs8(signer);
    let sealed: Buffer;
    try {
      sealed = await keyEnvelope.seal(pkcs8, ref, this.#kek);
    } finally {
      pkcs8.fill(0);
    }
    const inserted = await this.#db.run('INSERT INTO ca_keys (ref, sealed, created_at) VALUES ($1, $2, $3) ON CONFLICT (ref) DO NOTHING', [
      ref,
      sealed,
      epochSeconds(this.#clock.now()),
    ]);
    if (inserted === 0) throw new CaError('ALREADY_EXISTS', `CA key ${ref} already exists in the database`);
  }

  /** Loads and unseals the key stored under `ref`. */
  async load(ref: string): Promise<LocalSigner> {
    checkRef(ref);
    const [row] = await this.#db.query<{ sealed: Buffer }>('SELECT sealed FROM ca_keys WHERE ref = $1', [ref]);
    if (!row) throw new CaError('NOT_FOUND', `CA key ${ref} does not exist in the database`);
    const pkcs8 = await keyEnvelope.open(row.sealed, ref, this.#kek);
    try {
      return await signerFromPkcs8(pkcs8, `CA key ${ref}`);
    } finally {
      pkcs8.fill(0);
    }
  }

  /** Deletes the key stored under `ref`. False when there was none. */
  async remove(ref: string): Promise<boolean> {
    checkRef(ref);
    return (await this.#db.run('DELETE FROM ca_keys WHERE ref = $1', [ref])) > 0;
  }

  /** The stored refs, sorted (for backups and checks). */
  async refs(): Promise<string[]> {
    return (await this.#db.query<{ ref: string }>('SELECT ref FROM ca_keys ORDER BY ref')).map((r) => r.ref);
  }
}

/**
 * The CA's key store for its datastore: the key files of the data
 * directory with SQLite, the shared table with PostgreSQL (every server
 * then needs the same KEK, which the configuration enforces).
 */
export function selectKeyStore(datastore: { postgres: PostgresStore | null }, files: KeyStore, kek: KekSource, clock?: Clock): CaKeyStore {
  if (!datastore.postgres) return files;
  if ('keyFile' in kek) throw new CaError('INTERNAL', 'the key-encryption key file must be read before keys are kept in the database');
  return new PostgresKeyStore({ db: datastore.postgres.db, kek, ...(clock ? { clock } : {}) });
}
