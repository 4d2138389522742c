/**
 * A CA key as the OpenSSH certificate encoder needs it: its public key blob
 * and a `sign` that returns an SSH signature (`string algorithm, string
 * blob`). It wraps the same Signer the X.509 CA uses, so a file key, a test
 * key and a future KMS key all fit. Only Ed25519 and ECDSA: never SHA-1 RSA.
 */
import { CaError } from '../errors.js';
import type { Signer } from '../keys/signer.js';
import { sshPublicKeyBlob } from './public-key.js';
import { SshWriter } from './wire.js';

/** Signature algorithms a Brevis SSH CA signs with. */
export type SshSignatureAlgorithm = 'ssh-ed25519' | 'ecdsa-sha2-nistp256' | 'ecdsa-sha2-nistp384';

export interface SshCaSigner {
  readonly algorithm: SshSignatureAlgorithm;
  /** The CA's public key blob, as certificates embed it. */
  readonly publicKeyBlob: Buffer;
  /** Signs `data`; returns the SSH signature structure. */
  sign(data: Uint8Array): Promise<Buffer>;
}

/** Wraps an Ed25519, P-256 or P-384 Signer. */
export function sshCaSigner(signer: Signer): SshCaSigner {
  const algorithm: SshSignatureAlgorithm =
    signer.keyType === 'ed25519' ? 'ssh-ed25519' : signer.keyType === 'ec-p256' ? 'ecdsa-sha2-nistp256' : 'ecdsa-sha2-nistp384';
  const publicKeyBlob = sshPublicKeyBlob(signer.publicKeyObject);
  return {
    algorithm,
    publicKeyBlob,
    sign: async (data) => {
      const sig = Buffer.from(await signer.sign(data));
      // The Signer returns signatures as X.509 carries them: Ed25519 raw,
      // ECDSA as DER Ecdsa-Sig-Value. SSH wants mpint r, mpint s (RFC 5656).
      const blob = algorithm === 'ssh-ed25519' ? sig : ecdsaBlob(sig);
      return new SshWriter().string(algorithm).string(blob).toBuffer();
    },
  };
}

/** DER `SEQUENCE { INTEGER r, INTEGER s }` to SSH `mpint r || mpint s`. */
export function ecdsaBlob(der: Buffer): Buffer {
  let pos = 0;
  const fail = (): never => {
    throw new CaError('INTERNAL', 'the CA signer returned a malformed ECDSA signature');
  };
  const tlv = (tag: number): Buffer => {
    if (der[pos++] !== tag) fail();
    let len = der[pos++] ?? fail();
    if (len & 0x80) {
      if (len !== 0x81) fail();
      len = der[pos++] ?? fail();
    }
    if (pos + len > der.length) fail();
    const v = der.subarray(pos, pos + len);
    pos += len;
    return v;
  };
  const seq = tlv(0x30);
  if (pos !== der.length) fail();
  pos = der.length - seq.length;
  const r = tlv(0x02);
  const s = tlv(0x02);
  if (pos !== der.length) fail();
  // DER INTEGERs are already minimal two's complement: exactly an mpint body.
  return new SshWriter().string(r).string(s).toBuffer();
}
