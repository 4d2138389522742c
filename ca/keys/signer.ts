import { KeyObject, createPrivateKey, createPublicKey, sign as nodeSign } from 'node:crypto';
import type { webcrypto } from 'node:crypto';
import { CaError } from '../errors.js';
import { KEY_ALGORITHMS, keyTypeOf } from './keytype.js';
import type { KeyType } from './keytype.js';

/**
 * A CA signing key, as narrow as the certificate builders need: the public
 * key and `sign(bytes)`. A key file, an in-memory test key and a future KMS
 * key all fit; none of them has to expose private key material.
 */
export interface Signer {
  readonly keyType: KeyType;
  /** The public key for WebCrypto users (JWK export, @peculiar/x509). */
  readonly publicKey: webcrypto.CryptoKey;
  /** The public key for node:crypto users. */
  readonly publicKeyObject: KeyObject;
  /** DER SubjectPublicKeyInfo of the public key (cached: certificates embed it). */
  readonly spkiDer: Buffer;
  /**
   * Signs `data` with the key type's algorithm and returns the signature as
   * X.509 carries it: ECDSA as a DER `Ecdsa-Sig-Value` (not IEEE P1363),
   * Ed25519 as the raw 64 bytes.
   */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/**
 * A signer whose private key lives in this process (generated, or loaded by
 * the KeyStore). Only this kind can be saved to disk or handed to
 * @peculiar/x509 as a CryptoKey.
 */
export interface LocalSigner extends Signer {
  readonly privateKey: webcrypto.CryptoKey;
  readonly privateKeyObject: KeyObject;
}

/** Generates a fresh key of `keyType` (with Node's built-in WebCrypto). */
export async function generateSigner(keyType: KeyType): Promise<LocalSigner> {
  const alg = KEY_ALGORITHMS[keyType];
  if (alg === undefined) throw new TypeError(`unknown key type ${String(keyType)}`);
  const pair = (await globalThis.crypto.subtle.generateKey(alg.webcrypto.generate, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  return localSigner(keyType, pair.privateKey, KeyObject.from(pair.privateKey), pair.publicKey);
}

/**
 * Wraps a PKCS#8 DER private key in a LocalSigner. Throws
 * CaError('UNSUPPORTED_KEY') for a key that is not one of the CA key types.
 * `label` names the key in error messages (never the key itself).
 */
export async function signerFromPkcs8(pkcs8Der: Uint8Array, label = 'key'): Promise<LocalSigner> {
  let privateKeyObject: KeyObject;
  try {
    privateKeyObject = createPrivateKey({ key: Buffer.from(pkcs8Der), format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw new CaError('FAILED_PRECONDITION', `${label} is not a valid PKCS#8 private key`, { cause });
  }
  const keyType = keyTypeOf(privateKeyObject);
  if (keyType === undefined) {
    const curve = privateKeyObject.asymmetricKeyDetails?.namedCurve;
    throw new CaError(
      'UNSUPPORTED_KEY',
      `${label} has unsupported type ${privateKeyObject.asymmetricKeyType}${curve ? ` (${curve})` : ''}`,
    );
  }
  const alg = KEY_ALGORITHMS[keyType];
  const subtle = globalThis.crypto.subtle;
  const publicKeyObject = createPublicKey(privateKeyObject);
  const [privateKey, publicKey] = await Promise.all([
    subtle.importKey('pkcs8', Buffer.from(pkcs8Der), alg.webcrypto.import, false, ['sign']),
    subtle.importKey('spki', publicKeyObject.export({ type: 'spki', format: 'der' }), alg.webcrypto.import, true, [
      'verify',
    ]),
  ]);
  return localSigner(keyType, privateKey, privateKeyObject, publicKey);
}

/** The PKCS#8 DER encoding of a local signer's private key (for the KeyStore only). */
export function exportPkcs8(signer: LocalSigner): Buffer {
  return signer.privateKeyObject.export({ type: 'pkcs8', format: 'der' });
}

function localSigner(
  keyType: KeyType,
  privateKey: webcrypto.CryptoKey,
  privateKeyObject: KeyObject,
  publicKey: webcrypto.CryptoKey,
): LocalSigner {
  const publicKeyObject = KeyObject.from(publicKey);
  const spkiDer = publicKeyObject.export({ type: 'spki', format: 'der' });
  const digest = KEY_ALGORITHMS[keyType].node.digest;
  return {
    keyType,
    publicKey,
    publicKeyObject,
    spkiDer,
    privateKey,
    privateKeyObject,
    // node:crypto signs synchronously (about 35k P-256 signatures/s) and emits
    // DER ECDSA signatures by default: exactly what X.509 wants.
    sign: async (data) => nodeSign(digest, data, privateKeyObject),
  };
}
