import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { fixedSpkiJwk, pkcs8DerFromJwk, pkcs8DerOf, publicKeyFromSpki, spkiDerFromJwk, spkiDerOf } from '../ca/x509/spki.js';

/*
 * Keys are generated as JWK and imported, not taken from generateKeyPairSync
 * as KeyObjects: Node 20 can deadlock when a fresh generated KeyObject is
 * read (asymmetricKeyDetails, export) while the garbage collector finalizes
 * the job that generated it (both lock the key's mutex).
 */
type Kind = 'P-256' | 'P-384' | 'Ed25519';
function pair(kind: Kind): { privateKey: KeyObject; publicKey: KeyObject } {
  const enc = { publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } } as const;
  const jwk = kind === 'Ed25519' ? generateKeyPairSync('ed25519', enc) : generateKeyPairSync('ec', { namedCurve: kind, ...enc });
  // @types/node types jwk encodings as KeyObjects; they are plain JWK objects.
  const priv = jwk.privateKey as unknown as JsonWebKey;
  const pub = jwk.publicKey as unknown as JsonWebKey;
  return { privateKey: createPrivateKey({ key: priv, format: 'jwk' }), publicKey: createPublicKey({ key: pub, format: 'jwk' }) };
}

function derPair(type: 'rsa' | 'ec' | 'ed448' | 'x25519', options: object = {}): { privateKey: KeyObject; publicKey: KeyObject } {
  const der = generateKeyPairSync(type as 'rsa', {
    ...(options as { modulusLength: number }),
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'der' },
  });
  return {
    privateKey: createPrivateKey({ key: der.privateKey, format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: der.publicKey, format: 'der', type: 'spki' }),
  };
}

/** createPublicKey from DER, the generic path: the key's SPKI, or the error code. */
function generic(spki: Buffer): { ok: true; spki: string; type: string | undefined } | { ok: false } {
  try {
    const k = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    return { ok: true, spki: k.export({ type: 'spki', format: 'der' }).toString('hex'), type: k.asymmetricKeyType };
  } catch {
    return { ok: false };
  }
}

function fast(spki: Buffer): ReturnType<typeof generic> {
  try {
    const k = publicKeyFromSpki(spki);
    return { ok: true, spki: k.export({ type: 'spki', format: 'der' }).toString('hex'), type: k.asymmetricKeyType };
  } catch {
    return { ok: false };
  }
}

describe('fixed-form key encodings', () => {
  test.each(['P-256', 'P-384', 'Ed25519'] as const)('%s: SPKI and PKCS#8 written from the JWK equal what OpenSSL exports, for 300 keys', (kind) => {
    for (let i = 0; i < 300; i++) {
      const { privateKey, publicKey } = pair(kind);
      const spki = publicKey.export({ type: 'spki', format: 'der' });
      const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
      expect(spkiDerOf(publicKey).equals(spki)).toBe(true);
      expect(spkiDerOf(privateKey).equals(spki)).toBe(true);
      expect(pkcs8DerOf(privateKey).equals(pkcs8)).toBe(true);
      expect(spkiDerFromJwk(privateKey.export({ format: 'jwk' }))!.equals(spki)).toBe(true);
      expect(pkcs8DerFromJwk(privateKey.export({ format: 'jwk' }))!.equals(pkcs8)).toBe(true);
      expect(fixedSpkiJwk(spki)).toEqual(publicKey.export({ format: 'jwk' }));
    }
  });

  test.each(['P-256', 'Ed25519'] as const)('%s: a key whose coordinate or scalar starts with a zero byte keeps its full length', (kind) => {
    let found: KeyObject | undefined;
    for (let i = 0; i < 20_000 && !found; i++) {
      const { privateKey } = pair(kind);
      const jwk = privateKey.export({ format: 'jwk' });
      if ([jwk.x, jwk.y, jwk.d].some((v) => v !== undefined && Buffer.from(v, 'base64url')[0] === 0)) found = privateKey;
    }
    expect(found).toBeDefined();
    expect(pkcs8DerOf(found!).equals(found!.export({ type: 'pkcs8', format: 'der' }))).toBe(true);
    expect(spkiDerOf(found!).equals(createPublicKey(found!).export({ type: 'spki', format: 'der' }))).toBe(true);
  });

  test('a public JWK has no PKCS#8, and other key types have no fixed form', () => {
    expect(pkcs8DerFromJwk(pair('P-256').publicKey.export({ format: 'jwk' }))).toBeUndefined();
    expect(spkiDerFromJwk({ kty: 'EC', crv: 'P-521', x: 'AA', y: 'AA' })).toBeUndefined();
    expect(spkiDerFromJwk({ kty: 'RSA', n: 'AQAB', e: 'AQAB' })).toBeUndefined();
  });

  test.each([
    ['RSA 2048', () => derPair('rsa', { modulusLength: 2048 })],
    ['P-521', () => derPair('ec', { namedCurve: 'P-521' })],
    ['secp256k1', () => derPair('ec', { namedCurve: 'secp256k1' })],
    ['brainpoolP256r1', () => derPair('ec', { namedCurve: 'brainpoolP256r1' })],
    ['Ed448', () => derPair('ed448')],
    ['X25519', () => derPair('x25519')],
  ])('%s keys take the generic path with the same result', (_name, make) => {
    const { privateKey, publicKey } = make();
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    expect(spkiDerOf(publicKey).equals(spki)).toBe(true);
    expect(spkiDerOf(privateKey).equals(spki)).toBe(true);
    expect(pkcs8DerOf(privateKey).equals(privateKey.export({ type: 'pkcs8', format: 'der' }))).toBe(true);
    expect(fixedSpkiJwk(spki)).toBeUndefined();
    expect(fast(spki)).toEqual(generic(spki));
  });
});

describe('publicKeyFromSpki', () => {
  const P256_PRIME = Buffer.from('ffffffff00000001000000000000000000000000ffffffffffffffffffffffff', 'hex');

  test.each(['P-256', 'P-384', 'Ed25519'] as const)('%s: imports a valid key to the same key as the DER decoder', (kind) => {
    for (let i = 0; i < 50; i++) {
      const spki = pair(kind).publicKey.export({ type: 'spki', format: 'der' });
      const r = fast(spki);
      expect(r.ok).toBe(true);
      expect(r).toEqual(generic(spki));
    }
  });

  test.each(['P-256', 'P-384', 'Ed25519'] as const)('%s: accepts and refuses exactly what the DER decoder does, over 400 corrupted keys', (kind) => {
    let refused = 0;
    for (let i = 0; i < 400; i++) {
      const spki = Buffer.from(pair(kind).publicKey.export({ type: 'spki', format: 'der' }));
      // Flip a byte in the key bytes, or anywhere (header bytes take the generic path).
      const at = i % 4 === 0 ? i % spki.length : spki.length - 1 - (i % (kind === 'Ed25519' ? 32 : 64));
      spki[at]! ^= 1 << (i % 8);
      const g = generic(spki);
      if (!g.ok) refused++;
      expect(fast(spki), `${kind} byte ${at}`).toEqual(g);
    }
    // EC points off the curve are refused; any 32 bytes are an Ed25519 key.
    if (kind === 'Ed25519') expect(refused).toBeLessThan(400);
    else expect(refused).toBeGreaterThan(250);
  });

  test('refuses a P-256 point whose coordinates are not below the field prime, as the DER decoder does', () => {
    const spki = Buffer.from(pair('P-256').publicKey.export({ type: 'spki', format: 'der' }));
    const x = spki.subarray(27, 59);
    P256_PRIME.copy(x);
    expect(fixedSpkiJwk(spki)).toBeUndefined();
    expect(fast(spki)).toEqual(generic(spki));
    expect(generic(spki).ok).toBe(false);
    x.fill(0xff);
    expect(fixedSpkiJwk(spki)).toBeUndefined();
    expect(fast(spki)).toEqual({ ok: false });
  });

  test('takes compressed and hybrid EC points, and other lengths, through the DER decoder', () => {
    const { publicKey } = pair('P-256');
    const uncompressed = publicKey.export({ type: 'spki', format: 'der' });
    const jwk = publicKey.export({ format: 'jwk' });
    const y = Buffer.from(jwk.y!, 'base64url');
    const point = Buffer.concat([Buffer.from([2 + (y[31]! & 1)]), Buffer.from(jwk.x!, 'base64url')]);
    const spki = Buffer.concat([Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex'), point]);
    expect(fixedSpkiJwk(spki)).toBeUndefined();
    expect(fast(spki)).toEqual(generic(spki));
    expect(fast(spki).ok).toBe(true);
    const hybrid = Buffer.from(uncompressed);
    hybrid[26] = 6 + (y[31]! & 1);
    expect(fixedSpkiJwk(hybrid)).toBeUndefined();
    expect(fast(hybrid)).toEqual(generic(hybrid));
    for (const odd of [Buffer.concat([uncompressed, Buffer.from([0])]), uncompressed.subarray(0, uncompressed.length - 1)]) {
      expect(fixedSpkiJwk(odd)).toBeUndefined();
      expect(fast(odd)).toEqual(generic(odd));
    }
  });

  test('takes random bytes through the DER decoder and refuses them', () => {
    for (let i = 0; i < 20; i++) {
      const junk = randomBytes(91);
      expect(fast(junk)).toEqual(generic(junk));
    }
  });
});
