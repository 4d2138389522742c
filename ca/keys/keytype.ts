import type { KeyObject, webcrypto } from 'node:crypto';

/** The key types a Brevis CA key may have. */
export type KeyType = 'ec-p256' | 'ec-p384' | 'ed25519';

/** Everything the implementation needs to know about one CA key type, in one place. */
export interface KeyAlgorithm {
  readonly keyType: KeyType;
  /** WebCrypto parameters (Node's built-in `globalThis.crypto.subtle`). */
  readonly webcrypto: {
    readonly generate: webcrypto.EcKeyGenParams | webcrypto.Algorithm;
    readonly import: webcrypto.EcKeyImportParams | webcrypto.Algorithm;
    readonly sign: webcrypto.EcdsaParams | webcrypto.Algorithm;
  };
  /** node:crypto facts: what `KeyObject` reports and the digest `crypto.sign` takes (null: none, Ed25519). */
  readonly node: {
    readonly asymmetricKeyType: 'ec' | 'ed25519';
    readonly namedCurve: 'prime256v1' | 'secp384r1' | null;
    readonly digest: 'sha256' | 'sha384' | null;
  };
  /** The X.509 signature algorithm this key signs certificates with (parameters absent, RFC 5758 / RFC 8410). */
  readonly x509: {
    readonly signatureAlgorithmOid: string;
  };
  /** The OpenSSH public key / certificate signature algorithm name. */
  readonly sshKeyType: 'ecdsa-sha2-nistp256' | 'ecdsa-sha2-nistp384' | 'ssh-ed25519';
}

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const EC_P384 = { name: 'ECDSA', namedCurve: 'P-384' } as const;
const ED25519 = { name: 'Ed25519' } as const;

/** The single lookup table (jose style, lib/jws_algorithms.ts). */
export const KEY_ALGORITHMS: { readonly [K in KeyType]: KeyAlgorithm } = {
  'ec-p256': {
    keyType: 'ec-p256',
    webcrypto: { generate: EC_P256, import: EC_P256, sign: { name: 'ECDSA', hash: 'SHA-256' } },
    node: { asymmetricKeyType: 'ec', namedCurve: 'prime256v1', digest: 'sha256' },
    x509: { signatureAlgorithmOid: '1.2.840.10045.4.3.2' }, // ecdsa-with-SHA256
    sshKeyType: 'ecdsa-sha2-nistp256',
  },
  'ec-p384': {
    keyType: 'ec-p384',
    webcrypto: { generate: EC_P384, import: EC_P384, sign: { name: 'ECDSA', hash: 'SHA-384' } },
    node: { asymmetricKeyType: 'ec', namedCurve: 'secp384r1', digest: 'sha384' },
    x509: { signatureAlgorithmOid: '1.2.840.10045.4.3.3' }, // ecdsa-with-SHA384
    sshKeyType: 'ecdsa-sha2-nistp384',
  },
  ed25519: {
    keyType: 'ed25519',
    webcrypto: { generate: ED25519, import: ED25519, sign: ED25519 },
    node: { asymmetricKeyType: 'ed25519', namedCurve: null, digest: null },
    x509: { signatureAlgorithmOid: '1.3.101.112' }, // id-Ed25519
    sshKeyType: 'ssh-ed25519',
  },
};

/** All key types, in a stable order. */
export const KEY_TYPES: readonly KeyType[] = Object.keys(KEY_ALGORITHMS) as KeyType[];

/** True for a string naming a supported CA key type (config parsing). */
export function isKeyType(s: string): s is KeyType {
  return Object.prototype.hasOwnProperty.call(KEY_ALGORITHMS, s);
}

/** The CA key type of a node:crypto key (public or private), or undefined when it is not one we support. */
export function keyTypeOf(key: KeyObject): KeyType | undefined {
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve ?? null;
  for (const alg of Object.values(KEY_ALGORITHMS)) {
    if (alg.node.asymmetricKeyType === type && alg.node.namedCurve === curve) return alg.keyType;
  }
  return undefined;
}
