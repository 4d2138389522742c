/**
 * Fast conversions between node:crypto keys and their DER encodings for the
 * key types on the hot paths (P-256, P-384, Ed25519).
 *
 * Why: with OpenSSL 3, `createPublicKey` from SPKI DER costs about 230 us and
 * `export({ type: 'spki' })` about 230 us (the generic decoder/encoder
 * machinery), while a JWK import costs about 80 us for EC (mostly the point
 * validation) and 10 us for Ed25519, and a JWK export under 10 us. The DER of
 * these keys is fixed apart from the key bytes, so it is written and
 * recognised with constant prefixes; anything else takes the generic path.
 * Every fast result is byte for byte what the generic path gives
 * (test/x509-spki.test.ts).
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';

interface FixedSpki {
  /** Everything before the key bytes (for EC: up to and including the 0x04 of an uncompressed point). */
  prefix: Buffer;
  /** Length of one coordinate (EC) or of the key (Ed25519), bytes. */
  size: number;
  /** JWK `kty` / `crv`. */
  kty: 'EC' | 'OKP';
  crv: 'P-256' | 'P-384' | 'Ed25519';
  /** EC field prime, big-endian, `size` bytes: JWK coordinates must be below it. */
  prime?: Buffer;
  /** PKCS#8 DER around the private scalar (EC: then [1] public key). */
  pkcs8Prefix: Buffer;
}

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// SubjectPublicKeyInfo { AlgorithmIdentifier, BIT STRING (0 unused bits) } (RFC 5480, RFC 8410).
const FIXED: readonly FixedSpki[] = [
  {
    kty: 'EC',
    crv: 'P-256',
    size: 32,
    prefix: hex('3059 3013 0607 2a8648ce3d0201 0608 2a8648ce3d030107 0342 00 04'),
    prime: hex('ffffffff00000001000000000000000000000000ffffffffffffffffffffffff'),
    // PrivateKeyInfo { 0, AlgorithmIdentifier, OCTET STRING { ECPrivateKey { 1, OCTET STRING d, [1] BIT STRING Q } } } as OpenSSL writes it.
    pkcs8Prefix: hex('308187 020100 3013 0607 2a8648ce3d0201 0608 2a8648ce3d030107 046d 306b 020101 0420'),
  },
  {
    kty: 'EC',
    crv: 'P-384',
    size: 48,
    prefix: hex('3076 3010 0607 2a8648ce3d0201 0605 2b81040022 0362 00 04'),
    prime: hex('fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff'),
    pkcs8Prefix: hex('3081b6 020100 3010 0607 2a8648ce3d0201 0605 2b81040022 04819e 30819b 020101 0430'),
  },
  {
    kty: 'OKP',
    crv: 'Ed25519',
    size: 32,
    prefix: hex('302a 3005 0603 2b6570 0321 00'),
    // PrivateKeyInfo { 0, AlgorithmIdentifier, OCTET STRING { OCTET STRING seed } } (RFC 8410).
    pkcs8Prefix: hex('302e 020100 3005 0603 2b6570 0422 0420'),
  },
];

function keyLength(f: FixedSpki): number {
  return f.kty === 'EC' ? 2 * f.size : f.size;
}

function fixedFor(spkiDer: Uint8Array): FixedSpki | undefined {
  for (const f of FIXED) {
    if (spkiDer.length === f.prefix.length + keyLength(f) && Buffer.from(spkiDer.buffer, spkiDer.byteOffset, f.prefix.length).equals(f.prefix)) return f;
  }
  return undefined;
}

/**
 * The public JWK of a SubjectPublicKeyInfo in one of the fixed forms
 * (P-256 or P-384 with an uncompressed point whose coordinates are below
 * the field prime, or Ed25519), else undefined.
 */
export function fixedSpkiJwk(spkiDer: Uint8Array): JsonWebKey | undefined {
  const f = fixedFor(spkiDer);
  if (!f) return undefined;
  const key = Buffer.from(spkiDer.buffer, spkiDer.byteOffset + f.prefix.length, keyLength(f));
  if (f.kty === 'OKP') return { kty: 'OKP', crv: f.crv, x: key.toString('base64url') };
  const x = key.subarray(0, f.size);
  const y = key.subarray(f.size);
  // The generic decoder refuses coordinates >= p; a JWK import might reduce them instead.
  if (Buffer.compare(x, f.prime!) >= 0 || Buffer.compare(y, f.prime!) >= 0) return undefined;
  return { kty: 'EC', crv: f.crv, x: x.toString('base64url'), y: y.toString('base64url') };
}

/**
 * The uncompressed point (04 || x || y) and curve of a SubjectPublicKeyInfo
 * in one of the fixed EC forms (P-256 or P-384, coordinates below the field
 * prime), else undefined. A view into `spkiDer`, not a copy.
 */
export function fixedSpkiEcPoint(spkiDer: Uint8Array): { curve: 'P-256' | 'P-384'; point: Uint8Array } | undefined {
  const f = fixedFor(spkiDer);
  if (!f || f.kty !== 'EC') return undefined;
  const start = f.prefix.length - 1; // the 0x04 that ends the prefix
  const x = spkiDer.subarray(start + 1, start + 1 + f.size);
  const y = spkiDer.subarray(start + 1 + f.size);
  if (Buffer.compare(x, f.prime!) >= 0 || Buffer.compare(y, f.prime!) >= 0) return undefined;
  return { curve: f.crv as 'P-256' | 'P-384', point: spkiDer.subarray(start) };
}

/**
 * `createPublicKey` of a DER SubjectPublicKeyInfo, through a JWK when the
 * encoding is one of the fixed forms. Throws what `createPublicKey` throws
 * for a key it refuses (for instance an EC point not on the curve).
 */
export function publicKeyFromSpki(spkiDer: Buffer): KeyObject {
  const jwk = fixedSpkiJwk(spkiDer);
  return jwk ? createPublicKey({ key: jwk, format: 'jwk' }) : createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
}

/**
 * The SubjectPublicKeyInfo DER of a public JWK (or of the public half of a
 * private one) of a fixed-form type (P-256, P-384, Ed25519), else undefined.
 */
export function spkiDerFromJwk(jwk: JsonWebKey): Buffer | undefined {
  const f = fixedForJwk(jwk);
  if (!f) return undefined;
  return Buffer.concat(f.kty === 'EC' ? [f.prefix, b64(jwk.x, f.size), b64(jwk.y, f.size)] : [f.prefix, b64(jwk.x, f.size)]);
}

/** The PKCS#8 DER, as OpenSSL writes it, of a private JWK of a fixed-form type, else undefined. */
export function pkcs8DerFromJwk(jwk: JsonWebKey): Buffer | undefined {
  const f = fixedForJwk(jwk);
  if (!f || jwk.d === undefined) return undefined;
  if (f.kty === 'OKP') return Buffer.concat([f.pkcs8Prefix, b64(jwk.d, f.size)]);
  // [1] { BIT STRING { 0 unused bits, 04 || x || y } }
  const pointLength = 2 + 2 * f.size;
  const publicKey = Buffer.from([0xa1, pointLength + 2, 0x03, pointLength, 0x00, 0x04]);
  return Buffer.concat([f.pkcs8Prefix, b64(jwk.d, f.size), publicKey, b64(jwk.x, f.size), b64(jwk.y, f.size)]);
}

/**
 * `key.export({ type: 'spki', format: 'der' })` of a public or private key,
 * through its JWK for the fixed-form types.
 */
export function spkiDerOf(key: KeyObject): Buffer {
  const fast = spkiDerFromJwk(jwkOf(key));
  return fast ?? (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
}

/** `key.export({ type: 'pkcs8', format: 'der' })` of a private key, through its JWK for the fixed-form types. */
export function pkcs8DerOf(privateKey: KeyObject): Buffer {
  const fast = privateKey.type === 'private' ? pkcs8DerFromJwk(jwkOf(privateKey)) : undefined;
  return fast ?? privateKey.export({ type: 'pkcs8', format: 'der' });
}

/** The key's JWK, or {} for a key JWK cannot express (an unsupported curve). */
function jwkOf(key: KeyObject): JsonWebKey {
  try {
    return key.export({ format: 'jwk' });
  } catch {
    return {};
  }
}

function fixedForJwk(jwk: JsonWebKey): FixedSpki | undefined {
  return FIXED.find((f) => f.kty === jwk.kty && f.crv === jwk.crv);
}

function b64(v: string | undefined, size: number): Buffer {
  const b = Buffer.from(v ?? '', 'base64url');
  if (b.length !== size) throw new TypeError(`JWK field of ${b.length} bytes, want ${size}`);
  return b;
}
