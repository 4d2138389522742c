import { execFileSync, spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isCaError } from '../ca/errors.js';
import { MAX_CSR_BYTES, createCsr, parseCsr } from '../ca/x509/csr.js';
import { bitString, oid, sequence } from '../ca/x509/der.js';

let tmp: string;
let n = 0;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'brevis-csr-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A DER CSR made by openssl for `privateKey`, with extra `openssl req` arguments. */
function opensslCsr(privateKey: KeyObject, extra: string[] = []): Buffer {
  const keyPath = join(tmp, `key-${n}.pem`);
  const csrPath = join(tmp, `csr-${n++}.der`);
  writeFileSync(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  execFileSync('openssl', ['req', '-new', '-key', keyPath, '-subj', '/CN=workload', '-outform', 'DER', '-out', csrPath, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return readFileSync(csrPath);
}

/**
 * True when openssl verifies the CSR's self-signature. OpenSSL 3.0 exits 0
 * even on "verify failure", so read what it says.
 */
function opensslAccepts(der: Uint8Array): boolean {
  const path = join(tmp, `check-${n++}.der`);
  writeFileSync(path, der);
  const r = spawnSync('openssl', ['req', '-inform', 'DER', '-in', path, '-noout', '-verify'], { encoding: 'utf8' });
  return r.status === 0 && /self-signature verify OK/.test(`${r.stdout}${r.stderr}`);
}

function caError(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected an error');
}

const pair = {
  p256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  p384: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  ed25519: () => generateKeyPairSync('ed25519'),
  rsa2048: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
};

describe('parseCsr accepts', () => {
  test.each([
    ['P-256', pair.p256, 'ec-p256', []],
    ['P-384 (ECDSA with SHA-384)', pair.p384, 'ec-p384', ['-sha384']],
    ['Ed25519', pair.ed25519, 'ed25519', []],
    ['RSA 2048 (PKCS#1 v1.5, SHA-256)', pair.rsa2048, 'rsa', ['-sha256']],
    ['RSA 2048 (PSS, SHA-256, salt 32)', pair.rsa2048, 'rsa', ['-sha256', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32']],
    ['RSA 2048 (PSS, SHA-512, salt 64)', pair.rsa2048, 'rsa', ['-sha512', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:64']],
  ] as const)('a %s CSR made by openssl, returning its public key', (_name, make, keyType, extra) => {
    const { privateKey, publicKey } = make();
    const csr = parseCsr(opensslCsr(privateKey, [...extra]));
    expect(csr.keyType).toBe(keyType);
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    expect(csr.spkiDer.equals(spki)).toBe(true);
    expect(csr.publicKey.export({ type: 'spki', format: 'der' }).equals(spki)).toBe(true);
    expect(csr.rsaBits).toBe(keyType === 'rsa' ? 2048 : undefined);
  });

  test('an RSA 4096 CSR', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 4096 });
    expect(parseCsr(opensslCsr(privateKey)).rsaBits).toBe(4096);
  });
});

describe('createCsr', () => {
  test.each(Object.entries(pair))('builds a %s CSR from node:crypto keys that openssl and parseCsr verify', async (_name, make) => {
    const { privateKey, publicKey } = make();
    const der = await createCsr(privateKey, publicKey);
    expect(opensslAccepts(der)).toBe(true);
    expect(parseCsr(der).spkiDer.equals(publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
  });

  test('builds a CSR from WebCrypto keys', async () => {
    const keys = (await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPairLike;
    const csr = parseCsr(await createCsr(keys.privateKey, keys.publicKey));
    expect(csr.keyType).toBe('ec-p256');
  });

  test('refuses key types the CA would not accept', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-521' });
    const err = await createCsr(privateKey, publicKey).catch((e) => e);
    expect(isCaError(err, 'UNSUPPORTED_KEY')).toBe(true);
  });
});

describe('parseCsr rejects', () => {
  let good: Buffer;
  beforeAll(() => {
    good = opensslCsr(pair.p256().privateKey);
  });

  test('a truncated CSR as malformed', () => {
    for (const len of [0, 1, 10, good.length - 1]) {
      const err = caError(() => parseCsr(good.subarray(0, len)));
      expect(isCaError(err, 'CSR_INVALID'), String(len)).toBe(true);
      expect(err.message).toMatch(/malformed/);
    }
  });

  test('trailing bytes after the CSR', () => {
    const err = caError(() => parseCsr(Buffer.concat([good, Buffer.from([0])])));
    expect(isCaError(err, 'CSR_INVALID')).toBe(true);
    expect(err.message).toMatch(/trailing data/);
  });

  test.each([
    ['P-256', pair.p256],
    ['Ed25519', pair.ed25519],
    ['RSA', pair.rsa2048],
  ])('a %s CSR whose signature has one byte flipped', (_name, make) => {
    const der = opensslCsr(make().privateKey);
    expect(parseCsr(der)).toBeDefined();
    const bad = Buffer.from(der);
    bad[bad.length - 5]! ^= 0x01; // inside the signature BIT STRING, the last field
    expect(opensslAccepts(bad)).toBe(false);
    const err = caError(() => parseCsr(bad));
    expect(isCaError(err, 'CSR_INVALID')).toBe(true);
    expect(err.message).toMatch(/signature/);
  });

  test('a CSR whose signed content was changed after signing', () => {
    const bad = Buffer.from(good);
    const at = bad.indexOf(Buffer.from('workload'));
    bad[at] = 'W'.charCodeAt(0);
    const err = caError(() => parseCsr(bad));
    expect(isCaError(err, 'CSR_INVALID')).toBe(true);
    expect(err.message).toBe('CSR signature does not verify with its public key');
  });

  test.each([
    ['RSA 1024', () => generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey, /RSA 1024-bit/],
    ['P-521', () => generateKeyPairSync('ec', { namedCurve: 'P-521' }).privateKey, /P-521/],
    ['secp256k1', () => generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey, /secp256k1/],
    ['Ed448', () => generateKeyPairSync('ed448').privateKey, /Ed448/],
  ])('a %s key as unsupported, naming the type', (_name, make, message) => {
    const der = opensslCsr(make());
    expect(opensslAccepts(der)).toBe(true); // well-formed and correctly signed: only the key type is wrong
    const err = caError(() => parseCsr(der));
    expect(isCaError(err, 'UNSUPPORTED_KEY')).toBe(true);
    expect(err.message).toMatch(message);
  });

  test('an RSA key above 4096 bits, before its signature is even checked', () => {
    // Generating a real 8192-bit key takes about 10 s; a random odd modulus is enough here.
    const modulus = randomBytes(4104 / 8);
    modulus[0]! |= 0x80;
    modulus[modulus.length - 1]! |= 1;
    const spki = createPublicKey({ key: { kty: 'RSA', n: modulus.toString('base64url'), e: 'AQAB' }, format: 'jwk' }).export({ type: 'spki', format: 'der' });
    const info = sequence(Buffer.from([0x02, 0x01, 0x00]), sequence(), spki, Buffer.from([0xa0, 0x00]));
    const der = sequence(info, sequence(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00])), bitString(Buffer.alloc(513, 1)));
    const err = caError(() => parseCsr(der));
    expect(isCaError(err, 'UNSUPPORTED_KEY')).toBe(true);
    expect(err.message).toMatch(/RSA 4104-bit/);
  });

  test('an RSA CSR signed with SHA-1', () => {
    const der = opensslCsr(pair.rsa2048().privateKey, ['-sha1']);
    const err = caError(() => parseCsr(der));
    expect(isCaError(err, 'CSR_INVALID')).toBe(true);
    expect(err.message).toMatch(/signature algorithm 1\.2\.840\.113549\.1\.1\.5 is not supported/);
  });

  test('a well-formed CSR larger than the size limit, before parsing it', () => {
    const names = Array.from({ length: 600 }, (_, i) => `DNS:host-${i}.a-rather-long-subdomain.example.org`).join(',');
    const der = opensslCsr(pair.p256().privateKey, ['-addext', `subjectAltName=${names}`]);
    expect(der.length).toBeGreaterThan(MAX_CSR_BYTES);
    expect(opensslAccepts(der)).toBe(true);
    const err = caError(() => parseCsr(der));
    expect(isCaError(err, 'CSR_INVALID')).toBe(true);
    expect(err.message).toMatch(/more than the 16384 allowed/);
  });

  test('a certificate passed off as a CSR', () => {
    const keyPath = join(tmp, 'selfsigned.pem');
    const certPath = join(tmp, 'selfsigned.der');
    writeFileSync(keyPath, pair.p256().privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    execFileSync('openssl', ['req', '-x509', '-new', '-key', keyPath, '-subj', '/CN=x', '-days', '1', '-outform', 'DER', '-out', certPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(isCaError(caError(() => parseCsr(readFileSync(certPath))), 'CSR_INVALID')).toBe(true);
  });
});

interface CryptoKeyPairLike {
  privateKey: import('node:crypto').webcrypto.CryptoKey;
  publicKey: import('node:crypto').webcrypto.CryptoKey;
}
