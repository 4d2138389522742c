/**
 * Building CSRs: a minimal PKCS#10 request (version 0, empty subject, the
 * key, no attributes) signed with node:crypto. Byte for byte what
 * @peculiar/x509's Pkcs10CertificateRequestGenerator writes for the same key
 * (test/x509-create-csr.test.ts), at a fraction of the cost: the agent makes
 * one per workload SVID.
 */
import { KeyObject, sign, type JsonWebKey } from 'node:crypto';
import type { webcrypto } from 'node:crypto';
import { CaError } from '../errors.js';
import type { CsrKeyType } from './csr.js';
import { bitString, oid, sequence } from './der.js';
import { spkiDerFromJwk } from './spki.js';

const VERSION_0 = Buffer.from([0x02, 0x01, 0x00]);
const EMPTY_NAME = Buffer.from([0x30, 0x00]);
const NO_ATTRIBUTES = Buffer.from([0xa0, 0x00]);

/** How each key type signs its CSR: digest for node:crypto and the AlgorithmIdentifier DER. */
const SIGNING: { readonly [K in CsrKeyType]: { digest: string | null; algorithm: Buffer } } = {
  'ec-p256': { digest: 'sha256', algorithm: sequence(oid('1.2.840.10045.4.3.2')) }, // ecdsa-with-SHA256
  'ec-p384': { digest: 'sha384', algorithm: sequence(oid('1.2.840.10045.4.3.3')) }, // ecdsa-with-SHA384
  ed25519: { digest: null, algorithm: sequence(oid('1.3.101.112')) }, // id-Ed25519
  rsa: { digest: 'sha256', algorithm: sequence(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00])) }, // sha256WithRSAEncryption, NULL
};

/**
 * A CSR for the key whose SubjectPublicKeyInfo is `spkiDer`, signed with
 * `privateKey` (ECDSA signatures DER-encoded, as X.509 wants). The caller
 * vouches that both halves belong together and that `keyType` is theirs.
 */
export function csrForSpki(privateKey: KeyObject, spkiDer: Uint8Array, keyType: CsrKeyType): Buffer {
  const s = SIGNING[keyType];
  const info = sequence(VERSION_0, EMPTY_NAME, spkiDer, NO_ATTRIBUTES);
  return sequence(info, s.algorithm, bitString(sign(s.digest, info, privateKey)));
}

/**
 * Builds a minimal DER CSR (empty subject, no attributes) for a key pair,
 * for agents and the CLI. Accepts node:crypto KeyObjects or WebCrypto keys:
 * P-256 and P-384 (ECDSA with SHA-256/384), Ed25519, RSA (PKCS#1 v1.5 with
 * SHA-256). Throws CaError('UNSUPPORTED_KEY') for any other key type.
 */
export async function createCsr(
  privateKey: KeyObject | webcrypto.CryptoKey,
  publicKey: KeyObject | webcrypto.CryptoKey,
): Promise<Buffer> {
  const priv = privateKey instanceof KeyObject ? privateKey : KeyObject.from(privateKey);
  const pub = publicKey instanceof KeyObject ? publicKey : KeyObject.from(publicKey);
  let jwk: JsonWebKey = {};
  try {
    jwk = pub.export({ format: 'jwk' });
  } catch {
    // A curve JWK cannot name: refused below.
  }
  const keyType = csrKeyTypeOfJwk(jwk);
  if (keyType === 'rsa') return csrForSpki(priv, pub.export({ type: 'spki', format: 'der' }), 'rsa');
  if (keyType) return csrForSpki(priv, spkiDerFromJwk(jwk)!, keyType);
  const type = pub.asymmetricKeyType;
  const curve = pub.asymmetricKeyDetails?.namedCurve;
  throw new CaError('UNSUPPORTED_KEY', `cannot build a CSR for key type ${type}${curve ? ` (${curve})` : ''}`);
}

/** The CSR key type of a JWK, or undefined for one the CA would refuse. */
export function csrKeyTypeOfJwk(jwk: JsonWebKey): CsrKeyType | undefined {
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ec-p256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') return 'ec-p384';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'ed25519';
  if (jwk.kty === 'RSA') return 'rsa';
  return undefined;
}
