/**
 * CA keys in the shared PostgreSQL database: sealed under the KEK every
 * server is given, in the key-file envelope, bound to their ref.
 */
import { randomBytes, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore } from '../ca/keys/keystore.js';
import { PostgresKeyStore } from '../ca/keys/postgres-keystore.js';
import { exportPkcs8, generateSigner } from '../ca/keys/signer.js';
import { openPostgresStore, type PostgresStore } from '../ca/store/postgres.js';
import { startTestPostgres, type TestPostgres } from './support/postgres.js';

describe('CA keys in PostgreSQL', () => {
  let server: TestPostgres;
  let url: string;
  let store: PostgresStore;
  const kek = { key: randomBytes(32) };
  beforeAll(async () => {
    server = await startTestPostgres();
    url = await server.createDatabase();
    store = await openPostgresStore(url);
  });
  afterAll(async () => {
    await store?.close();
    await server?.stop();
  });

  it('stores a key that another server with the same KEK loads and signs with', async () => {
    const signer = await generateSigner('ec-p256');
    await new PostgresKeyStore({ db: store.db, kek }).save('x509-root-aa01', signer);
    const other = await openPostgresStore(url);
    try {
      const loaded = await new PostgresKeyStore({ db: other.db, kek: { key: Buffer.from(kek.key) } }).load('x509-root-aa01');
      const data = Buffer.from('to be signed');
      const sig = await loaded.sign(data);
      expect(verify('sha256', data, { key: signer.publicKeyObject, dsaEncoding: 'der' }, sig)).toBe(true);
      expect(loaded.spkiDer.equals(signer.spkiDer)).toBe(true);
    } finally {
      await other.close();
    }
  });

  it('keeps no private key material in the table, only the sealed envelope', async () => {
    const signer = await generateSigner('ed25519');
    await new PostgresKeyStore({ db: store.db, kek }).save('ssh-user-bb02', signer);
    const [row] = await server.sql<{ sealed: Buffer }>(url, "SELECT sealed FROM ca_keys WHERE ref = 'ssh-user-bb02'");
    const pkcs8 = exportPkcs8(signer);
    expect(row!.sealed.subarray(0, 7).toString('ascii')).toBe('BRVSKEY');
    expect(row!.sealed.includes(pkcs8.subarray(pkcs8.length - 32))).toBe(false);
  });

  it('refuses to replace a stored key and reports a missing one as not found', async () => {
    const keys = new PostgresKeyStore({ db: store.db, kek });
    await keys.save('x509-intermediate-cc03', await generateSigner('ec-p256'));
    await expect(keys.save('x509-intermediate-cc03', await generateSigner('ec-p256'))).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(keys.load('x509-intermediate-none')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(keys.load('../etc/passwd')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await keys.has('x509-intermediate-cc03')).toBe(true);
    expect(await keys.remove('x509-intermediate-cc03')).toBe(true);
    expect(await keys.remove('x509-intermediate-cc03')).toBe(false);
    expect(await keys.has('x509-intermediate-cc03')).toBe(false);
  });

  it('refuses to unseal with another KEK, and a row copied under another ref', async () => {
    const keys = new PostgresKeyStore({ db: store.db, kek });
    await keys.save('x509-root-dd04', await generateSigner('ec-p256'));
    const wrong = new PostgresKeyStore({ db: store.db, kek: { key: randomBytes(32) } });
    const err = (await wrong.load('x509-root-dd04').then(() => new Error('loaded'), (e: unknown) => e)) as Error & { code: string };
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/wrong key-encryption key/);
    expect(err.message).not.toContain(kek.key.toString('hex'));
    await server.sql(url, "INSERT INTO ca_keys (ref, sealed, created_at) SELECT 'x509-root-ee05', sealed, 0 FROM ca_keys WHERE ref = 'x509-root-dd04'");
    await expect(keys.load('x509-root-ee05')).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
  });

  it('uses the key-file envelope: a sealed row written to a file loads with the file KeyStore and the same KEK', async () => {
    const signer = await generateSigner('ec-p384');
    await new PostgresKeyStore({ db: store.db, kek }).save('x509-root-ff06', signer);
    const [row] = await server.sql<{ sealed: Buffer }>(url, "SELECT sealed FROM ca_keys WHERE ref = 'x509-root-ff06'");
    const dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-keyfile-'));
    try {
      writeFileSync(path.join(dir, 'x509-root-ff06.key'), row!.sealed, { mode: 0o600 });
      const loaded = await new KeyStore({ dir, kek }).load('x509-root-ff06');
      expect(loaded.spkiDer.equals(signer.spkiDer)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
