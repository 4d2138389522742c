/**
 * Hand-built PKCS#10 CSRs for hostile-input tests: any key type node:crypto
 * can sign with (P-521, secp256k1, RSA-1024, DSA, Ed448, ...), any declared
 * signature algorithm, and signatures made over the wrong bytes or digest.
 * Independent of the CA's own encoder on purpose.
 */
import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

export function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

export const seq = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));

export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const body: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift((v & 0x7f) | 0x80);
    body.push(...chunk);
  }
  return tlv(0x06, Buffer.from(body));
}

const NULL = Buffer.from([0x05, 0x00]);

export const SIG_OIDS = {
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  ecdsaSha512: '1.2.840.10045.4.3.4',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
  rsaSha256: '1.2.840.113549.1.1.11',
  rsaSha1: '1.2.840.113549.1.1.5',
  rsaMd5: '1.2.840.113549.1.1.4',
  dsaSha256: '2.16.840.1.101.3.4.3.2',
} as const;

export interface ForgeOptions {
  /** Signs the CSR (whatever its declared algorithm). */
  key: KeyObject;
  /** The SubjectPublicKeyInfo put in the CSR (default: the key's own). */
  spki?: Buffer;
  /** Declared signature algorithm. */
  sigOid: string;
  /** Add a NULL parameter (RSA style). */
  nullParams?: boolean;
  /** Digest actually used to sign (null for EdDSA). */
  digest: string | null;
  /** Sign these bytes instead of the CertificationRequestInfo. */
  signOver?: Buffer;
  /** A subject Name (DER) instead of the empty one. */
  subject?: Buffer;
}

/** A DER CSR: version 0, the subject, the key, no attributes, and a signature as specified. */
export function forgeCsr(o: ForgeOptions): Buffer {
  const spki = o.spki ?? createPublicKey(o.key).export({ type: 'spki', format: 'der' });
  const info = seq(tlv(0x02, Buffer.from([0])), o.subject ?? seq(), spki, tlv(0xa0, Buffer.alloc(0)));
  const signature = sign(o.digest, o.signOver ?? info, o.key);
  const alg = seq(oid(o.sigOid), ...(o.nullParams ? [NULL] : []));
  return seq(info, alg, tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
}

export interface CsrCorpus {
  /** CSRs the CA must accept: P-256, P-384, Ed25519, RSA-2048, RSA-4096. */
  valid: Array<{ name: string; der: Buffer }>;
  /** Well-formed DER the CA must refuse, with why. */
  refused: Array<{ name: string; der: Buffer }>;
}

/** Builds the corpus once (RSA and DSA key generation take a moment). */
export function buildCsrCorpus(): CsrCorpus {
  const ec = (namedCurve: string) => generateKeyPairSync('ec', { namedCurve }).privateKey;
  const p256 = ec('P-256');
  const p384 = ec('P-384');
  const ed = generateKeyPairSync('ed25519').privateKey;
  const rsa2048 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const rsa4096 = generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey;
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
  const rsa1536 = generateKeyPairSync('rsa', { modulusLength: 1536 }).privateKey;
  const rsaSmallE = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 }).privateKey;
  const p521 = ec('P-521');
  const k1 = ec('secp256k1');
  const ed448 = generateKeyPairSync('ed448').privateKey;
  const dsa = generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 }).privateKey;
  const x25519 = generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'der' });
  const S = SIG_OIDS;
  const valid = [
    { name: 'P-256', der: forgeCsr({ key: p256, sigOid: S.ecdsaSha256, digest: 'sha256' }) },
    { name: 'P-384', der: forgeCsr({ key: p384, sigOid: S.ecdsaSha384, digest: 'sha384' }) },
    { name: 'Ed25519', der: forgeCsr({ key: ed, sigOid: S.ed25519, digest: null }) },
    { name: 'RSA-2048', der: forgeCsr({ key: rsa2048, sigOid: S.rsaSha256, nullParams: true, digest: 'sha256' }) },
    { name: 'RSA-4096', der: forgeCsr({ key: rsa4096, sigOid: S.rsaSha256, nullParams: true, digest: 'sha256' }) },
  ];
  const refused = [
    { name: 'RSA-1024 (weak)', der: forgeCsr({ key: rsa1024, sigOid: S.rsaSha256, nullParams: true, digest: 'sha256' }) },
    { name: 'RSA-1536 (weak)', der: forgeCsr({ key: rsa1536, sigOid: S.rsaSha256, nullParams: true, digest: 'sha256' }) },
    { name: 'RSA e=3', der: forgeCsr({ key: rsaSmallE, sigOid: S.rsaSha256, nullParams: true, digest: 'sha256' }) },
    { name: 'RSA SHA-1 signature', der: forgeCsr({ key: rsa2048, sigOid: S.rsaSha1, nullParams: true, digest: 'sha1' }) },
    { name: 'RSA MD5 signature', der: forgeCsr({ key: rsa2048, sigOid: S.rsaMd5, nullParams: true, digest: 'md5' }) },
    { name: 'P-521 (unsupported)', der: forgeCsr({ key: p521, sigOid: S.ecdsaSha512, digest: 'sha512' }) },
    { name: 'secp256k1 (unsupported)', der: forgeCsr({ key: k1, sigOid: S.ecdsaSha256, digest: 'sha256' }) },
    { name: 'Ed448 (unsupported)', der: forgeCsr({ key: ed448, sigOid: S.ed448, digest: null }) },
    { name: 'DSA (unsupported)', der: forgeCsr({ key: dsa, sigOid: S.dsaSha256, digest: 'sha256' }) },
    { name: 'X25519 key (cannot sign)', der: forgeCsr({ key: p256, spki: x25519, sigOid: S.ecdsaSha256, digest: 'sha256' }) },
    { name: 'P-256 declared as Ed25519', der: forgeCsr({ key: p256, sigOid: S.ed25519, digest: 'sha256' }) },
    { name: 'P-256 declared as RSA', der: forgeCsr({ key: p256, sigOid: S.rsaSha256, nullParams: true, digest: 'sha256' }) },
    { name: 'P-256 SHA-384 declared, SHA-256 used', der: forgeCsr({ key: p256, sigOid: S.ecdsaSha384, digest: 'sha256' }) },
    { name: 'RSA declared as ECDSA', der: forgeCsr({ key: rsa2048, sigOid: S.ecdsaSha256, digest: 'sha256' }) },
    { name: 'Ed25519 declared as ECDSA', der: forgeCsr({ key: ed, sigOid: S.ecdsaSha256, digest: null }) },
    { name: 'signature over other bytes', der: forgeCsr({ key: p256, sigOid: S.ecdsaSha256, digest: 'sha256', signOver: Buffer.from('not the request') }) },
    { name: 'key of another signer', der: forgeCsr({ key: p256, spki: createPublicKey(p384).export({ type: 'spki', format: 'der' }), sigOid: S.ecdsaSha256, digest: 'sha256' }) },
    { name: 'P-256 key, signed by another P-256 key', der: forgeCsr({ key: ec('P-256'), spki: createPublicKey(p256).export({ type: 'spki', format: 'der' }), sigOid: S.ecdsaSha256, digest: 'sha256' }) },
  ];
  return { valid, refused };
}
