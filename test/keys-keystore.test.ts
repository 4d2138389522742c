import { execFileSync } from 'node:child_process';
import { verify } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { isCaError } from '../ca/errors.js';
import { KeyStore } from '../ca/keys/keystore.js';
import { KEY_ALGORITHMS, KEY_TYPES } from '../ca/keys/keytype.js';
import { exportPkcs8, generateSigner } from '../ca/keys/signer.js';
import type { LocalSigner } from '../ca/keys/signer.js';

const PASSPHRASE = 'correct horse battery staple';
const DATA = Buffer.from('tbs bytes');

let tmp: string;
let dir: string;

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'brevis-keystore-'));
  dir = join(tmp, 'keys');
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

async function expectSameKey(loaded: LocalSigner, original: LocalSigner): Promise<void> {
  expect(loaded.keyType).toBe(original.keyType);
  expect(loaded.spkiDer.equals(original.spkiDer)).toBe(true);
  const signature = await loaded.sign(DATA);
  expect(verify(KEY_ALGORITHMS[original.keyType].node.digest, DATA, original.publicKeyObject, signature)).toBe(true);
}

const mode = (path: string) => statSync(path).mode & 0o777;

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('KeyStore without a key-encryption key', () => {
  test.each(KEY_TYPES)('a %s key round-trips as plain PKCS#8 PEM with mode 0600 that openssl reads', async (keyType) => {
    const store = new KeyStore({ dir });
    const signer = await generateSigner(keyType);
    await store.save('root-1', signer);
    const path = store.pathOf('root-1');
    expect(mode(dir)).toBe(0o700);
    expect(mode(path)).toBe(0o600);
    expect(readFileSync(path, 'latin1')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const spki = execFileSync('openssl', ['pkey', '-in', path, '-pubout', '-outform', 'DER']);
    expect(spki.equals(signer.spkiDer)).toBe(true);
    await expectSameKey(await store.load('root-1'), signer);
  });

  test('refuses to load a key file that group or others can read', async () => {
    const store = new KeyStore({ dir });
    await store.save('loose', await generateSigner('ec-p256'));
    chmodSync(store.pathOf('loose'), 0o644);
    const err = await rejection(store.load('loose'));
    expect(isCaError(err, 'FAILED_PRECONDITION')).toBe(true);
    expect(err.message).toContain('mode 0644');
    chmodSync(store.pathOf('loose'), 0o600);
    await expect(store.load('loose')).resolves.toBeDefined();
  });

  test('never replaces an existing key and leaves no temp files behind', async () => {
    const store = new KeyStore({ dir });
    const first = await generateSigner('ed25519');
    await store.save('k', first);
    const err = await rejection(store.save('k', await generateSigner('ed25519')));
    expect(isCaError(err, 'ALREADY_EXISTS')).toBe(true);
    await expectSameKey(await store.load('k'), first);
    expect(readdirSync(dir)).toEqual(['k.key']);
  });

  test('reports a missing key as NOT_FOUND and knows which keys exist', async () => {
    const store = new KeyStore({ dir });
    expect(await store.has('nope')).toBe(false);
    expect(isCaError(await rejection(store.load('nope')), 'NOT_FOUND')).toBe(true);
    await store.save('yes', await generateSigner('ec-p384'));
    expect(await store.has('yes')).toBe(true);
    expect(await store.remove('yes')).toBe(true);
    expect(await store.remove('yes')).toBe(false);
    expect(await store.has('yes')).toBe(false);
  });

  test('refuses key references that could escape the directory', async () => {
    const store = new KeyStore({ dir });
    for (const ref of ['../evil', 'a/b', '.hidden', '', 'x'.repeat(200)]) {
      const err = await rejection(store.load(ref));
      expect(isCaError(err, 'INVALID_ARGUMENT'), ref).toBe(true);
    }
  });

  test('refuses an encrypted key when no key-encryption key is configured', async () => {
    await new KeyStore({ dir, kek: { passphrase: PASSPHRASE } }).save('enc', await generateSigner('ec-p256'));
    const err = await rejection(new KeyStore({ dir }).load('enc'));
    expect(isCaError(err, 'FAILED_PRECONDITION')).toBe(true);
    expect(err.message).toMatch(/encrypted/);
  });
});

describe('KeyStore with a key-encryption key', () => {
  test.each(KEY_TYPES)('a %s key round-trips encrypted at rest', async (keyType) => {
    const store = new KeyStore({ dir, kek: { passphrase: PASSPHRASE } });
    const signer = await generateSigner(keyType);
    await store.save('inter', signer);
    const path = store.pathOf('inter');
    expect(mode(path)).toBe(0o600);
    const file = readFileSync(path);
    expect(file.subarray(0, 8).toString('latin1')).toBe('BRVSKEY\x01');
    expect(file.includes(exportPkcs8(signer))).toBe(false);
    expect(file.includes(Buffer.from(PASSPHRASE))).toBe(false);
    // A second store with the same passphrase (a restart) reads it.
    await expectSameKey(await new KeyStore({ dir, kek: { passphrase: PASSPHRASE } }).load('inter'), signer);
  });

  test('two saves of the same key produce different ciphertexts (fresh salt and IV per file)', async () => {
    const store = new KeyStore({ dir, kek: { passphrase: PASSPHRASE } });
    const signer = await generateSigner('ec-p256');
    await store.save('a', signer);
    await store.save('b', signer);
    const [a, b] = [readFileSync(store.pathOf('a')), readFileSync(store.pathOf('b'))];
    expect(a.subarray(11, 27).equals(b.subarray(11, 27))).toBe(false); // salt
    expect(a.subarray(27, 39).equals(b.subarray(27, 39))).toBe(false); // IV
  });

  test('a wrong passphrase is reported as such, without revealing either passphrase', async () => {
    await new KeyStore({ dir, kek: { passphrase: PASSPHRASE } }).save('root', await generateSigner('ec-p256'));
    const err = await rejection(new KeyStore({ dir, kek: { passphrase: 'Tr0ub4dor&3' } }).load('root'));
    expect(isCaError(err, 'FAILED_PRECONDITION')).toBe(true);
    expect(err.message).toMatch(/^cannot decrypt CA key root: wrong key-encryption key\?/);
    expect(err.message).not.toContain('Tr0ub4dor');
    expect(err.message).not.toContain(PASSPHRASE);
  });

  test.each([
    ['the ciphertext', (f: Buffer) => f.length - 40],
    ['the authentication tag', (f: Buffer) => f.length - 1],
    ['the salt', () => 12],
    ['the IV', () => 30],
    ['the scrypt r parameter', () => 9],
  ])('a flipped bit in %s is detected', async (_what, offset) => {
    const store = new KeyStore({ dir, kek: { passphrase: PASSPHRASE } });
    await store.save('root', await generateSigner('ed25519'));
    const path = store.pathOf('root');
    const file = readFileSync(path);
    file[offset(file)]! ^= 0x01;
    writeFileSync(path, file);
    const err = await rejection(store.load('root'));
    expect(isCaError(err, 'FAILED_PRECONDITION')).toBe(true);
    expect(err.message).toMatch(/cannot decrypt CA key root/);
  });

  test('a key file copied under another reference does not decrypt (the reference is authenticated)', async () => {
    const store = new KeyStore({ dir, kek: { passphrase: PASSPHRASE } });
    await store.save('old', await generateSigner('ec-p256'));
    writeFileSync(store.pathOf('new'), readFileSync(store.pathOf('old')), { mode: 0o600 });
    expect(isCaError(await rejection(store.load('new')), 'FAILED_PRECONDITION')).toBe(true);
    await expect(store.load('old')).resolves.toBeDefined();
  });

  test('a truncated or unknown-version file is refused', async () => {
    const store = new KeyStore({ dir, kek: { passphrase: PASSPHRASE } });
    await store.save('root', await generateSigner('ec-p256'));
    const path = store.pathOf('root');
    const file = readFileSync(path);
    writeFileSync(path, file.subarray(0, 30));
    expect((await rejection(store.load('root'))).message).toMatch(/truncated/);
    const v2 = Buffer.from(file);
    v2[7] = 2;
    writeFileSync(path, v2);
    expect((await rejection(store.load('root'))).message).toMatch(/version 2/);
  });

  test('a plain key is refused when a key-encryption key is configured', async () => {
    await new KeyStore({ dir }).save('plain', await generateSigner('ec-p256'));
    const err = await rejection(new KeyStore({ dir, kek: { passphrase: PASSPHRASE } }).load('plain'));
    expect(isCaError(err, 'FAILED_PRECONDITION')).toBe(true);
    expect(err.message).toMatch(/not encrypted/);
  });

  test('a key file may hold the key-encryption key, and must be private itself', async () => {
    const kekFile = join(tmp, 'kek.bin');
    writeFileSync(kekFile, Buffer.from('0123456789abcdef0123456789abcdef'), { mode: 0o600 });
    const store = new KeyStore({ dir, kek: { keyFile: kekFile } });
    const signer = await generateSigner('ec-p384');
    await store.save('root', signer);
    await expectSameKey(await new KeyStore({ dir, kek: { keyFile: kekFile } }).load('root'), signer);

    // The same bytes as a passphrase are the same KEK; different bytes are not.
    await expectSameKey(await new KeyStore({ dir, kek: { passphrase: '0123456789abcdef0123456789abcdef' } }).load('root'), signer);
    const other = join(tmp, 'other.bin');
    writeFileSync(other, 'another key', { mode: 0o600 });
    expect((await rejection(new KeyStore({ dir, kek: { keyFile: other } }).load('root'))).message).toMatch(/wrong key-encryption key/);

    chmodSync(kekFile, 0o640);
    const err = await rejection(new KeyStore({ dir, kek: { keyFile: kekFile } }).load('root'));
    expect(isCaError(err, 'FAILED_PRECONDITION')).toBe(true);
    expect(err.message).toMatch(/key-encryption key file .*\(mode 0640\)/);
  });

  test('an empty passphrase is refused up front', () => {
    expect(() => new KeyStore({ dir, kek: { passphrase: '' } })).toThrow(/passphrase is empty/);
  });
});
