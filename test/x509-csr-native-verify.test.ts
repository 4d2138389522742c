/**
 * The ecdsa addon (ca/native/ecdsa.c) verifies EC CSR signatures without
 * node:crypto's key import. These tests hold it to node:crypto, path against
 * path on the same inputs, and to openssl as the independent judge.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { InvalidEcPointError, nativeEcdsaAvailable, verifyEcdsa } from '../ca/native/ecdsa.js';
import { CaError } from '../ca/errors.js';
import { createCsr, parseCsr, parseCsrAsync } from '../ca/x509/csr.js';
import { fixedSpkiEcPoint } from '../ca/x509/spki.js';

let tmp: string;
let n = 0;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'brevis-csr-native-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/* Keys go through DER so that no test touches a KeyObject still owned by a key generation job (see x509-spki.test.ts). */
function ecPair(namedCurve: 'P-256' | 'P-384'): { privateKey: KeyObject; publicKey: KeyObject } {
  const der = generateKeyPairSync('ec', { namedCurve, publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } });
  return {
    privateKey: createPrivateKey({ key: der.privateKey, format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: der.publicKey, format: 'der', type: 'spki' }),
  };
}

function opensslCsr(privateKey: KeyObject, digest: string): Buffer {
  const keyPath = join(tmp, `key-${n}.pem`);
  const csrPath = join(tmp, `csr-${n++}.der`);
  writeFileSync(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  execFileSync('openssl', ['req', '-new', '-key', keyPath, '-subj', '/CN=workload', `-${digest}`, '-outform', 'DER', '-out', csrPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  return readFileSync(csrPath);
}

/** OpenSSL 3.0 exits 0 even on "verify failure", so read what it says. */
function opensslAccepts(der: Uint8Array): boolean {
  const path = join(tmp, `check-${n++}.der`);
  writeFileSync(path, der);
  const r = spawnSync('openssl', ['req', '-inform', 'DER', '-in', path, '-noout', '-verify'], { encoding: 'utf8' });
  return r.status === 0 && /self-signature verify OK/.test(`${r.stdout}${r.stderr}`);
}

/** What parseCsr makes of `der` on one path: the key it returns, or the error code and message. */
function outcome(der: Uint8Array, nativeEcdsa: boolean): string {
  try {
    const c = parseCsr(der, { nativeEcdsa });
    return `ok ${c.keyType} ${c.spkiDer.toString('hex')} ${c.publicKey.export({ type: 'spki', format: 'der' }).toString('hex')}`;
  } catch (e) {
    if (e instanceof CaError) return `${e.code}: ${e.message}`;
    throw e;
  }
}

test('the addon is built and loaded (npm ci builds it with node-gyp)', () => {
  expect(nativeEcdsaAvailable()).toBe(true);
});

describe('verifyEcdsa agrees with node:crypto', () => {
  test.each([
    ['P-256', 'sha256'],
    ['P-256', 'sha384'],
    ['P-256', 'sha512'],
    ['P-384', 'sha384'],
    ['P-384', 'sha256'],
  ] as const)('%s with %s: valid, altered signature, altered data, another key', (curve, digest) => {
    const other = ecPair(curve).publicKey;
    for (let i = 0; i < 40; i++) {
      const { privateKey, publicKey } = ecPair(curve);
      const point = fixedSpkiEcPoint(publicKey.export({ type: 'spki', format: 'der' }))!.point;
      const otherPoint = fixedSpkiEcPoint(other.export({ type: 'spki', format: 'der' }))!.point;
      const data = randomBytes(1 + i * 7);
      const sig = sign(digest, data, privateKey);
      const badSig = Buffer.from(sig);
      badSig[8 + (i % (sig.length - 8))]! ^= 1 << i % 8;
      const badData = Buffer.from(data);
      badData[i % data.length]! ^= 0x40;
      const cases: Array<[Uint8Array, Buffer, Buffer, KeyObject]> = [
        [point, data, sig, publicKey],
        [point, data, badSig, publicKey],
        [point, badData, sig, publicKey],
        [otherPoint, data, sig, other],
      ];
      for (const [p, d, s, k] of cases) expect(verifyEcdsa(curve, digest, p, d, s)).toBe(verify(digest, d, k, s));
    }
  });

  test('a signature that is not strict DER is refused, as node:crypto refuses it', () => {
    const { privateKey, publicKey } = ecPair('P-256');
    const point = fixedSpkiEcPoint(publicKey.export({ type: 'spki', format: 'der' }))!.point;
    const data = randomBytes(64);
    const sig = sign('sha256', data, privateKey);
    // The same r and s with r given a needless leading zero octet (BER, not DER).
    const rLen = sig[3]!;
    const r = sig.subarray(4, 4 + rLen);
    const rest = sig.subarray(4 + rLen);
    const ber = Buffer.concat([Buffer.from([0x30, sig[1]! + 1, 0x02, rLen + 1, 0x00]), r, rest]);
    const trailing = Buffer.concat([sig, Buffer.from([0])]);
    for (const s of [ber, trailing, Buffer.alloc(0), Buffer.from([0x30, 0x00])]) {
      let nodeSays: boolean;
      try {
        nodeSays = verify('sha256', data, publicKey, s);
      } catch {
        nodeSays = false;
      }
      expect(nodeSays).toBe(false);
      expect(verifyEcdsa('P-256', 'sha256', point, data, s)).toBe(false);
    }
  });

  test('a point off the curve is refused before any verification', () => {
    const { publicKey } = ecPair('P-256');
    const point = Buffer.from(fixedSpkiEcPoint(publicKey.export({ type: 'spki', format: 'der' }))!.point);
    point[64]! ^= 1;
    expect(() => verifyEcdsa('P-256', 'sha256', point, Buffer.alloc(1), Buffer.alloc(8))).toThrow(InvalidEcPointError);
    // node:crypto refuses the same key at import.
    const spki = Buffer.concat([publicKey.export({ type: 'spki', format: 'der' }).subarray(0, 26), point]);
    expect(() => createPublicKey({ key: spki, format: 'der', type: 'spki' })).toThrow();
  });
});

describe('parseCsr gives the same answer through the addon and through node:crypto', () => {
  test.each([
    ['P-256', 'sha256'],
    ['P-256', 'sha512'],
    ['P-384', 'sha384'],
  ] as const)('%s CSRs made by openssl with %s, which openssl verifies', (curve, digest) => {
    const { privateKey } = ecPair(curve);
    const der = opensslCsr(privateKey, digest);
    expect(opensslAccepts(der)).toBe(true);
    const native = outcome(der, true);
    expect(native.startsWith(`ok ec-${curve === 'P-256' ? 'p256' : 'p384'}`)).toBe(true);
    expect(native).toBe(outcome(der, false));
  });

  test('every single-bit change in a CSR gets the same answer on both paths, and an accepted one is one openssl accepts', async () => {
    const { privateKey, publicKey } = ecPair('P-256');
    const der = await createCsr(privateKey, publicKey);
    let accepted = 0;
    for (let i = 0; i < der.length * 8; i += 3) {
      const bad = Buffer.from(der);
      bad[i >> 3]! ^= 1 << (i & 7);
      const native = outcome(bad, true);
      expect(native, `bit ${i}`).toBe(outcome(bad, false));
      if (native.startsWith('ok')) {
        accepted++;
        expect(opensslAccepts(bad), `bit ${i}`).toBe(true);
      }
    }
    // Flips inside the signed content or the signature must never verify; only unsigned slack could.
    expect(accepted).toBeLessThan(10);
  });

  test('a CSR whose key is off the curve: the same error on both paths, sync and async', async () => {
    const { privateKey, publicKey } = ecPair('P-256');
    const der = Buffer.from(await createCsr(privateKey, publicKey));
    const point = fixedSpkiEcPoint(publicKey.export({ type: 'spki', format: 'der' }))!.point;
    const at = der.indexOf(Buffer.from(point));
    expect(at).toBeGreaterThan(0);
    der[at + 64]! ^= 1;
    expect(outcome(der, true)).toBe('CSR_INVALID: CSR public key is malformed');
    expect(outcome(der, false)).toBe('CSR_INVALID: CSR public key is malformed');
    await expect(parseCsrAsync(der)).rejects.toMatchObject({ code: 'CSR_INVALID', message: 'CSR public key is malformed' });
  });

  test('parseCsrAsync through the addon returns what parseCsr returns', async () => {
    const { privateKey, publicKey } = ecPair('P-384');
    const der = await createCsr(privateKey, publicKey);
    const a = await parseCsrAsync(der);
    const b = parseCsr(der, { nativeEcdsa: false });
    expect(a.keyType).toBe(b.keyType);
    expect(a.spkiDer.equals(b.spkiDer)).toBe(true);
    expect(a.publicKey.export({ type: 'spki', format: 'der' }).equals(b.spkiDer)).toBe(true);
  });
});
