/**
 * Key pairs are generated on the node and only their CSRs leave it. P-256:
 * fast to generate (about 26k/s here) and accepted everywhere.
 *
 * The pair is generated as a JWK and the private key imported from it,
 * never handed out as generateKeyPairSync's KeyObjects: on Node 20, reading
 * such a KeyObject (asymmetricKeyDetails, export) while the garbage
 * collector finalizes the job that generated it deadlocks the process (both
 * hold the key's mutex), which an agent minting thousands of keys hits. The
 * DER encodings are written from the JWK (ca/x509/spki.ts), equal to what
 * OpenSSL exports.
 */
import { createPrivateKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { csrForSpki } from '../../ca/x509/create-csr.js';
import { pkcs8DerFromJwk, spkiDerFromJwk } from '../../ca/x509/spki.js';

export interface NewKey {
  /** PKCS#8 DER of the private key. */
  pkcs8: Buffer;
  /** PKCS#10 CSR, DER, self-signed with the key. */
  csr: Buffer;
  /** SubjectPublicKeyInfo DER of the public key (what the certificate must carry). */
  spki: Buffer;
  /** The private key, for checking what the CA returns. */
  privateKey: KeyObject;
}

// @types/node 20 has no overload for JWK encodings (Node supports them since 15.9).
const generateJwkPair = generateKeyPairSync as unknown as (type: 'ec', options: object) => { privateKey: JsonWebKey; publicKey: JsonWebKey };

export async function newKeyWithCsr(): Promise<NewKey> {
  const jwk = generateJwkPair('ec', { namedCurve: 'P-256', publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } }).privateKey;
  const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  const spki = spkiDerFromJwk(jwk)!;
  return { pkcs8: pkcs8DerFromJwk(jwk)!, csr: csrForSpki(privateKey, spki, 'ec-p256'), spki, privateKey };
}
