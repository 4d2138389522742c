import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { isCaError } from '../ca/errors.js';
import { KEY_ALGORITHMS, KEY_TYPES, isKeyType, keyTypeOf } from '../ca/keys/keytype.js';
import { exportPkcs8, generateSigner, signerFromPkcs8 } from '../ca/keys/signer.js';

const DATA = Buffer.from('to be signed: a TBSCertificate, say');

describe('generateSigner', () => {
  test.each(KEY_TYPES)('a generated %s signer signs in the form X.509 expects, verifiable with node:crypto', async (keyType) => {
    const signer = await generateSigner(keyType);
    expect(signer.keyType).toBe(keyType);
    expect(keyTypeOf(signer.publicKeyObject)).toBe(keyType);
    expect(signer.spkiDer.equals(signer.publicKeyObject.export({ type: 'spki', format: 'der' }))).toBe(true);
    expect(signer.publicKey.type).toBe('public');
    expect(signer.privateKey.type).toBe('private');

    const signature = Buffer.from(await signer.sign(DATA));
    const digest = KEY_ALGORITHMS[keyType].node.digest;
    // node:crypto verifies ECDSA signatures in DER form by default: the X.509 encoding.
    expect(verify(digest, DATA, signer.publicKeyObject, signature)).toBe(true);
    expect(verify(digest, Buffer.from('something else'), signer.publicKeyObject, signature)).toBe(false);
    if (keyType === 'ed25519') expect(signature.length).toBe(64);
    else expect(signature[0]).toBe(0x30); // DER SEQUENCE, not IEEE P1363 r||s
  });

  test.each(KEY_TYPES)('a %s key exported as PKCS#8 comes back as an equivalent signer', async (keyType) => {
    const signer = await generateSigner(keyType);
    const again = await signerFromPkcs8(exportPkcs8(signer));
    expect(again.keyType).toBe(keyType);
    expect(again.spkiDer.equals(signer.spkiDer)).toBe(true);
    const signature = await again.sign(DATA);
    expect(verify(KEY_ALGORITHMS[keyType].node.digest, DATA, signer.publicKeyObject, signature)).toBe(true);
  });
});

describe('key type table', () => {
  test('maps node:crypto keys to CA key types and refuses the others', () => {
    const key = (t: 'ec' | 'ed25519' | 'rsa' | 'ed448', o: object = {}) =>
      createPublicKey(generateKeyPairSync(t as 'ec', o as { namedCurve: string }).privateKey);
    expect(keyTypeOf(key('ec', { namedCurve: 'P-256' }))).toBe('ec-p256');
    expect(keyTypeOf(key('ec', { namedCurve: 'P-384' }))).toBe('ec-p384');
    expect(keyTypeOf(key('ed25519'))).toBe('ed25519');
    expect(keyTypeOf(key('ec', { namedCurve: 'P-521' }))).toBeUndefined();
    expect(keyTypeOf(key('ed448'))).toBeUndefined();
    expect(keyTypeOf(key('rsa', { modulusLength: 2048 }))).toBeUndefined();
  });

  test('recognises exactly the supported key type names', () => {
    expect(KEY_TYPES).toEqual(['ec-p256', 'ec-p384', 'ed25519']);
    expect(isKeyType('ec-p384')).toBe(true);
    expect(isKeyType('rsa')).toBe(false);
    expect(isKeyType('toString')).toBe(false);
  });

  test('a P-521 private key is refused as an unsupported CA key', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-521' });
    const err = await signerFromPkcs8(privateKey.export({ type: 'pkcs8', format: 'der' }), 'CA key test').catch((e) => e);
    expect(isCaError(err, 'UNSUPPORTED_KEY')).toBe(true);
    expect(err.message).toContain('secp521r1');
  });

  test('bytes that are not PKCS#8 are refused without echoing them', async () => {
    const err = await signerFromPkcs8(Buffer.from('not a key at all'), 'CA key junk').catch((e) => e);
    expect(isCaError(err, 'FAILED_PRECONDITION')).toBe(true);
    expect(err.message).not.toContain('not a key at all');
  });
});
