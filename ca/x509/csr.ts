import { constants, verify, type KeyObject } from 'node:crypto';
import { CaError } from '../errors.js';
import {
  DerError,
  DerReader,
  TAG,
  contextTag,
  decodeOctetAlignedBitString,
  decodeOid,
  decodeSmallInteger,
  readerOf,
} from './der.js';
import type { Tlv } from './der.js';
import { fixedSpkiEcPoint, publicKeyFromSpki } from './spki.js';
import { InvalidEcPointError, nativeEcdsaAvailable, verifyEcdsa, type EcdsaCurve, type EcdsaDigest } from '../native/ecdsa.js';
import { cryptoGate } from './thread-pool-gate.js';

/** Subject key types accepted in a CSR. */
export type CsrKeyType = 'ec-p256' | 'ec-p384' | 'ed25519' | 'rsa';

export interface ParsedCsr {
  /**
   * The subject public key. For P-256 and P-384 keys whose signature the
   * ecdsa addon verified, it is imported on first read: callers that need
   * only the DER (the mint workers) never pay for the import.
   */
  readonly publicKey: KeyObject;
  spkiDer: Buffer;
  keyType: CsrKeyType;
  /** Modulus length, for RSA keys. */
  rsaBits?: number;
}

export interface CsrParseOptions {
  /**
   * false: verify EC signatures with node:crypto even when the ecdsa addon
   * is loaded (tests compare the two paths). Default: the addon when loaded.
   */
  nativeEcdsa?: boolean;
}

/** Larger CSRs are refused before parsing (a 4096-bit RSA CSR is about 1.7 KiB). */
export const MAX_CSR_BYTES = 16 * 1024;
export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 4096;

const OIDS = {
  ecPublicKey: '1.2.840.10045.2.1',
  p256: '1.2.840.10045.3.1.7',
  p384: '1.3.132.0.34',
  ed25519: '1.3.101.112',
  rsaEncryption: '1.2.840.113549.1.1.1',
  rsassaPss: '1.2.840.113549.1.1.10',
  mgf1: '1.2.840.113549.1.1.8',
} as const;

/** Names for key algorithms we refuse, so the error says what was sent. */
const KNOWN_KEY_NAMES: Readonly<Record<string, string>> = {
  '1.3.132.0.35': 'EC P-521',
  '1.3.132.0.10': 'EC secp256k1',
  '1.3.36.3.3.2.8.1.1.7': 'EC brainpoolP256r1',
  '1.3.101.110': 'X25519',
  '1.3.101.111': 'X448',
  '1.3.101.113': 'Ed448',
  '1.2.840.10040.4.1': 'DSA',
  [OIDS.rsassaPss]: 'RSA-PSS-only',
};

const HASH_BY_OID: Readonly<Record<string, 'sha256' | 'sha384' | 'sha512'>> = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

/** Signature algorithms a CSR may use: which key family and digest each implies. */
const SIGNATURE_ALGORITHMS: Readonly<Record<string, { family: 'ec' | 'ed25519' | 'rsa'; digest: string | null }>> = {
  '1.2.840.10045.4.3.2': { family: 'ec', digest: 'sha256' },
  '1.2.840.10045.4.3.3': { family: 'ec', digest: 'sha384' },
  '1.2.840.10045.4.3.4': { family: 'ec', digest: 'sha512' },
  '1.3.101.112': { family: 'ed25519', digest: null },
  '1.2.840.113549.1.1.11': { family: 'rsa', digest: 'sha256' },
  '1.2.840.113549.1.1.12': { family: 'rsa', digest: 'sha384' },
  '1.2.840.113549.1.1.13': { family: 'rsa', digest: 'sha512' },
};

/**
 * Parses a DER PKCS#10 CSR, checks the subject key is one we issue for
 * (P-256, P-384, Ed25519, RSA 2048..4096) and verifies the self-signature
 * (proof of possession). Everything else in the CSR (subject, requested
 * extensions) is ignored: the CA decides the certificate's contents.
 * Throws CaError('CSR_INVALID') for a malformed, oversize or badly signed
 * CSR and CaError('UNSUPPORTED_KEY') for any other key type.
 */
export function parseCsr(der: Uint8Array, opts: CsrParseOptions = {}): ParsedCsr {
  const c = prepareCsr(der, opts);
  const fast = verifyNative(c);
  if (fast !== undefined) return verified(c, fast);
  let ok: boolean;
  try {
    ok = verify(c.digest, c.info, c.verifyKey(), c.signature);
  } catch (cause) {
    throw malformedSignature(cause);
  }
  return verified(c, ok);
}

/**
 * The signature check of an EC CSR through the ecdsa addon (no key import:
 * ca/native/ecdsa.ts), or undefined when it does not apply (another key
 * type, a key not in the fixed form, or no addon). Accepts and refuses what
 * node:crypto does, with the same errors (test/csr-native-verify.test.ts).
 */
function verifyNative(c: PreparedCsr): boolean | undefined {
  if (!c.ecPoint || !c.digest) return undefined;
  try {
    return verifyEcdsa(c.ecPoint.curve, c.digest as EcdsaDigest, c.ecPoint.point, c.info, c.signature);
  } catch (cause) {
    if (cause instanceof InvalidEcPointError) throw new CaError('CSR_INVALID', 'CSR public key is malformed', { cause });
    throw malformedSignature(cause);
  }
}

/**
 * parseCsr, with the signature verified on libuv's thread pool instead of
 * the calling thread (at most cryptoGate.limit at once), so that many CSRs are verified on several cores while
 * the event loop goes on. Accepts and refuses exactly what parseCsr does,
 * with the same errors.
 */
export async function parseCsrAsync(der: Uint8Array, opts: CsrParseOptions = {}): Promise<ParsedCsr> {
  const c = prepareCsr(der, opts);
  // Through the addon the whole check costs what the key import alone costs here, without a trip to the pool.
  const fast = verifyNative(c);
  if (fast !== undefined) return verified(c, fast);
  const verifyKey = c.verifyKey();
  const ok = await cryptoGate.run(
    () =>
      new Promise<boolean>((resolve, reject) => {
        try {
          verify(c.digest, c.info, verifyKey, c.signature, (err, result) => (err ? reject(malformedSignature(err)) : resolve(result)));
        } catch (cause) {
          reject(malformedSignature(cause));
        }
      }),
  );
  return verified(c, ok);
}

interface PreparedCsr {
  key: ParsedCsr;
  info: Buffer;
  signature: Buffer;
  digest: string | null;
  /** The key for node:crypto's verify (importing it if it was not yet). */
  verifyKey(): KeyObject | { key: KeyObject; padding: number; saltLength: number };
  /** The uncompressed point of a fixed-form EC key, for the addon. */
  ecPoint?: { curve: EcdsaCurve; point: Uint8Array };
}

/** Everything but the signature check: size, structure, key type, signature algorithm. */
function prepareCsr(der: Uint8Array, opts: CsrParseOptions): PreparedCsr {
  if (der.length > MAX_CSR_BYTES) {
    throw new CaError('CSR_INVALID', `CSR is ${der.length} bytes, more than the ${MAX_CSR_BYTES} allowed`);
  }
  let parts: ReturnType<typeof splitCsr>;
  try {
    parts = splitCsr(der);
  } catch (e) {
    if (e instanceof DerError) throw new CaError('CSR_INVALID', `CSR is malformed: ${e.message}`, { cause: e });
    throw e;
  }
  const { key, ecPoint } = subjectKey(parts.spki, opts.nativeEcdsa !== false && nativeEcdsaAvailable());
  const signature = signatureCheck(parts.signatureAlgorithm, key.keyType);
  return {
    key,
    info: parts.info,
    signature: parts.signature,
    digest: signature.digest,
    verifyKey: () =>
      signature.pssSaltLength === undefined
        ? key.publicKey
        : { key: key.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: signature.pssSaltLength },
    ...(ecPoint ? { ecPoint } : {}),
  };
}

function malformedSignature(cause: unknown): CaError {
  return new CaError('CSR_INVALID', 'CSR signature is malformed', { cause });
}

function verified(c: PreparedCsr, ok: boolean): ParsedCsr {
  if (!ok) throw new CaError('CSR_INVALID', 'CSR signature does not verify with its public key');
  return c.key;
}

/** The exact signed bytes, the key and the signature of a CSR (DER structure only). */
function splitCsr(der: Uint8Array): { info: Buffer; spki: Tlv; signatureAlgorithm: Tlv; signature: Buffer } {
  const top = new DerReader(der);
  const csr = readerOf(top.read(), TAG.SEQUENCE, 'CertificationRequest');
  top.end('CertificationRequest');
  const info = csr.expect(TAG.SEQUENCE, 'CertificationRequestInfo');
  const signatureAlgorithm = csr.expect(TAG.SEQUENCE, 'signatureAlgorithm');
  const signature = decodeOctetAlignedBitString(csr.expect(TAG.BIT_STRING, 'signature').content);
  csr.end('CertificationRequest');

  const body = new DerReader(info.content);
  if (decodeSmallInteger(body.expect(TAG.INTEGER, 'version').content) !== 0) throw new DerError('unknown CSR version');
  body.expect(TAG.SEQUENCE, 'subject');
  const spki = body.expect(TAG.SEQUENCE, 'subjectPKInfo');
  body.optional(contextTag(0, true)); // attributes
  body.end('CertificationRequestInfo');
  return { info: info.raw, spki, signatureAlgorithm, signature };
}

function subjectKey(spki: Tlv, native: boolean): { key: ParsedCsr; ecPoint?: { curve: EcdsaCurve; point: Uint8Array } } {
  const r = new DerReader(spki.content);
  let algOid: string;
  let curveOid: string | undefined;
  try {
    const alg = readerOf(r.read(), TAG.SEQUENCE, 'AlgorithmIdentifier');
    algOid = decodeOid(alg.expect(TAG.OID, 'algorithm').content);
    const curve = alg.optional(TAG.OID);
    if (curve) curveOid = decodeOid(curve.content);
  } catch (e) {
    throw new CaError('CSR_INVALID', `CSR public key is malformed: ${(e as Error).message}`, { cause: e });
  }
  let keyType: CsrKeyType;
  if (algOid === OIDS.ecPublicKey && curveOid === OIDS.p256) keyType = 'ec-p256';
  else if (algOid === OIDS.ecPublicKey && curveOid === OIDS.p384) keyType = 'ec-p384';
  else if (algOid === OIDS.ed25519) keyType = 'ed25519';
  else if (algOid === OIDS.rsaEncryption) keyType = 'rsa';
  else {
    const name =
      algOid === OIDS.ecPublicKey
        ? (KNOWN_KEY_NAMES[curveOid ?? ''] ?? `EC on curve ${curveOid ?? '(unnamed)'}`)
        : (KNOWN_KEY_NAMES[algOid] ?? `algorithm ${algOid}`);
    throw new CaError('UNSUPPORTED_KEY', `CSR key type ${name} is not supported; use P-256, P-384, Ed25519 or RSA 2048..4096`);
  }

  const spkiDer = Buffer.from(spki.raw);
  // A fixed-form EC key is checked on the curve by the addon with the signature, and imported only if read.
  const ecPoint = native && (keyType === 'ec-p256' || keyType === 'ec-p384') ? fixedSpkiEcPoint(spkiDer) : undefined;
  if (ecPoint) return { key: lazyKey(spkiDer, keyType), ecPoint };
  const publicKey = importSubjectKey(spkiDer);
  if (keyType !== 'rsa') return { key: { publicKey, spkiDer, keyType } };

  const details = publicKey.asymmetricKeyDetails ?? {};
  const bits = details.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) {
    throw new CaError('UNSUPPORTED_KEY', `CSR key type RSA ${bits}-bit is not supported; RSA keys must be ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits`);
  }
  // The same rule as for SSH subject keys (ca/ssh/public-key.ts): small exponents such as 3 are refused.
  const e = details.publicExponent ?? 0n;
  if (e <= 2n ** 16n || e >= 2n ** 256n || e % 2n === 0n) {
    throw new CaError('UNSUPPORTED_KEY', 'CSR RSA public exponent must be odd and between 2^16 and 2^256 (65537 is usual)');
  }
  return { key: { publicKey, spkiDer, keyType, rsaBits: bits } };
}

function importSubjectKey(spkiDer: Buffer): KeyObject {
  try {
    return publicKeyFromSpki(spkiDer);
  } catch (cause) {
    throw new CaError('CSR_INVALID', 'CSR public key is malformed', { cause });
  }
}

/** A ParsedCsr whose KeyObject is made on first read. */
function lazyKey(spkiDer: Buffer, keyType: CsrKeyType): ParsedCsr {
  let publicKey: KeyObject | undefined;
  return {
    spkiDer,
    keyType,
    get publicKey() {
      return (publicKey ??= importSubjectKey(spkiDer));
    },
  };
}

/** The node:crypto digest (and PSS salt length) for the CSR's signature algorithm, checked against its key. */
function signatureCheck(algorithm: Tlv, keyType: CsrKeyType): { digest: string | null; pssSaltLength?: number } {
  let oid: string;
  let params: Tlv | undefined;
  try {
    const r = new DerReader(algorithm.content);
    oid = decodeOid(r.expect(TAG.OID, 'algorithm').content);
    params = r.done ? undefined : r.read();
    r.end('AlgorithmIdentifier');
  } catch (e) {
    throw new CaError('CSR_INVALID', `CSR signature algorithm is malformed: ${(e as Error).message}`, { cause: e });
  }
  const family = keyType.startsWith('ec-') ? 'ec' : keyType;
  if (oid === OIDS.rsassaPss) {
    if (family !== 'rsa') throw new CaError('CSR_INVALID', 'CSR signature algorithm RSASSA-PSS does not match its key');
    return pssParams(params);
  }
  const alg = SIGNATURE_ALGORITHMS[oid];
  if (!alg) throw new CaError('CSR_INVALID', `CSR signature algorithm ${oid} is not supported`);
  if (alg.family !== family) throw new CaError('CSR_INVALID', `CSR signature algorithm ${oid} does not match its ${keyType} key`);
  // RFC 4055: RSA PKCS#1 v1.5 parameters are NULL (absent is tolerated); ECDSA and Ed25519 have none.
  if (params && !(family === 'rsa' && params.tag === TAG.NULL && params.content.length === 0)) {
    throw new CaError('CSR_INVALID', `CSR signature algorithm ${oid} has unexpected parameters`);
  }
  return { digest: alg.digest };
}

/** RSASSA-PSS-params (RFC 4055): SHA-2 hash, MGF1 with the same hash, trailer 1. SHA-1 defaults are refused. */
function pssParams(params: Tlv | undefined): { digest: string; pssSaltLength: number } {
  const bad = (why: string): never => {
    throw new CaError('CSR_INVALID', `CSR RSASSA-PSS parameters are not supported: ${why}`);
  };
  if (!params || params.tag !== TAG.SEQUENCE) return bad('SHA-1 defaults');
  try {
    const r = new DerReader(params.content);
    const hashTlv = r.optional(contextTag(0, true));
    const mgfTlv = r.optional(contextTag(1, true));
    const saltTlv = r.optional(contextTag(2, true));
    const trailerTlv = r.optional(contextTag(3, true));
    r.end('RSASSA-PSS-params');
    if (!hashTlv || !mgfTlv) return bad('SHA-1 defaults');
    const hashAlg = readerOf(new DerReader(hashTlv.content).read(), TAG.SEQUENCE, 'hashAlgorithm');
    const digest = HASH_BY_OID[decodeOid(hashAlg.expect(TAG.OID, 'hash').content)] ?? bad('hash');
    const mgf = readerOf(new DerReader(mgfTlv.content).read(), TAG.SEQUENCE, 'maskGenAlgorithm');
    if (decodeOid(mgf.expect(TAG.OID, 'mgf').content) !== OIDS.mgf1) bad('mask generation function');
    const mgfHash = readerOf(mgf.read(), TAG.SEQUENCE, 'MGF1 hash');
    if (HASH_BY_OID[decodeOid(mgfHash.expect(TAG.OID, 'hash').content)] !== digest) bad('MGF1 hash differs');
    const saltLength = saltTlv ? decodeSmallInteger(new DerReader(saltTlv.content).expect(TAG.INTEGER, 'salt').content) : 20;
    if (trailerTlv && decodeSmallInteger(new DerReader(trailerTlv.content).expect(TAG.INTEGER, 'trailer').content) !== 1) {
      bad('trailer field');
    }
    return { digest, pssSaltLength: saltLength };
  } catch (e) {
    if (e instanceof DerError) throw new CaError('CSR_INVALID', `CSR RSASSA-PSS parameters are malformed: ${e.message}`, { cause: e });
    throw e;
  }
}

export { createCsr } from './create-csr.js';
