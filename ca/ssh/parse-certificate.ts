/**
 * Reads an OpenSSH certificate back and verifies its signature. The issuer
 * uses it to check every certificate before returning it; tests and the
 * agent use it to look inside one. Strict: wrong order, duplicate names,
 * trailing bytes or an unknown type are errors.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { CaError } from '../errors.js';
import { byteOrder } from './options.js';
import { parsePublicKeyBlob, type SshKeyAlgorithm } from './public-key.js';
import type { SshCertType } from './certificate.js';
import { SshReader, SshWriter, decodeStringList } from './wire.js';

export interface ParsedSshCertificate {
  certType: string;
  nonce: Buffer;
  /** The subject's plain public key blob, rebuilt from the certificate. */
  subjectKeyBlob: Buffer;
  subjectKeyType: SshKeyAlgorithm;
  serial: bigint;
  type: SshCertType;
  keyId: string;
  principals: string[];
  validAfter: bigint;
  validBefore: bigint;
  /** name -> decoded value ('' for a flag). */
  criticalOptions: Map<string, string>;
  extensions: Map<string, string>;
  caKeyBlob: Buffer;
  signatureAlgorithm: string;
  signatureBlob: Buffer;
  /** The bytes the signature covers. */
  signedData: Buffer;
}

const SUFFIX = '-cert-v01@openssh.com';

/** Parses a certificate blob; CaError('INVALID_ARGUMENT') when malformed. */
export function parseCertificate(blob: Buffer): ParsedSshCertificate {
  const r = new SshReader(blob, 'invalid SSH certificate');
  const certType = r.text();
  if (!certType.endsWith(SUFFIX)) r.fail(`'${certType.slice(0, 64)}' is not a certificate type`);
  const keyType = certType.slice(0, -SUFFIX.length);
  const nonce = r.bytes();
  const fieldsStart = r.offset;
  const fieldCount = keyType === 'ssh-ed25519' ? 1 : keyType.startsWith('ecdsa-sha2-') ? 2 : keyType === 'ssh-rsa' ? 2 : r.fail(`unsupported key type ${keyType.slice(0, 64)}`);
  for (let i = 0; i < fieldCount; i++) r.bytes();
  const fields = blob.subarray(fieldsStart, r.offset);
  const subject = parsePublicKeyBlob(new SshWriter().string(keyType).raw(fields).toBuffer());
  const serial = r.uint64();
  const typeCode = r.uint32();
  if (typeCode !== 1 && typeCode !== 2) r.fail(`unknown certificate type ${typeCode}`);
  const keyId = r.text();
  const principals = decodeStringList(r.bytes(), 'invalid SSH certificate principals');
  const validAfter = r.uint64();
  const validBefore = r.uint64();
  const criticalOptions = decodeOptions(r.bytes(), 'critical options');
  const extensions = decodeOptions(r.bytes(), 'extensions');
  if (r.bytes().length !== 0) r.fail('the reserved field is not empty');
  const caKeyBlob = r.bytes();
  const signedData = blob.subarray(0, r.offset);
  const sig = new SshReader(r.bytes(), 'invalid SSH certificate signature');
  r.end();
  const signatureAlgorithm = sig.text();
  const signatureBlob = sig.bytes();
  sig.end();
  return {
    certType,
    nonce,
    subjectKeyBlob: subject.blob,
    subjectKeyType: subject.type,
    serial,
    type: typeCode === 1 ? 'user' : 'host',
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions,
    caKeyBlob,
    signatureAlgorithm,
    signatureBlob,
    signedData,
  };
}

/** Name/data pairs in strictly increasing name order; a non-empty data is an SSH string. */
function decodeOptions(buf: Buffer, what: string): Map<string, string> {
  const r = new SshReader(buf, `invalid SSH certificate ${what}`);
  const out = new Map<string, string>();
  let prev: string | undefined;
  while (r.remaining > 0) {
    const name = r.text();
    const data = r.bytes();
    if (prev !== undefined && byteOrder(prev, name) >= 0) r.fail(`'${name.slice(0, 64)}' is out of order or repeated`);
    prev = name;
    if (data.length === 0) {
      out.set(name, '');
    } else {
      const inner = new SshReader(data, `invalid SSH certificate ${what}`);
      out.set(name, inner.text());
      inner.end();
    }
  }
  return out;
}

/**
 * True when the certificate's signature verifies under the CA key it
 * names. Ed25519 and ECDSA (P-256/SHA-256, P-384/SHA-384) CA keys only.
 */
export function verifyCertificateSignature(c: ParsedSshCertificate): boolean {
  const ca = sshCaPublicKey(c.caKeyBlob);
  if (!ca || ca.algorithm !== c.signatureAlgorithm) return false;
  if (ca.algorithm === 'ssh-ed25519') return verify(null, c.signedData, ca.key, c.signatureBlob);
  const r = new SshReader(c.signatureBlob, 'invalid ECDSA signature');
  const size = ca.algorithm === 'ecdsa-sha2-nistp256' ? 32 : 48;
  const rr = r.positiveMpint();
  const ss = r.positiveMpint();
  r.end();
  if (rr.length > size || ss.length > size) return false;
  const p1363 = Buffer.concat([Buffer.alloc(size - rr.length), rr, Buffer.alloc(size - ss.length), ss]);
  return verify(size === 32 ? 'sha256' : 'sha384', c.signedData, { key: ca.key, dsaEncoding: 'ieee-p1363' }, p1363);
}

/** A CA public key blob as a node:crypto key, or undefined for a type Brevis does not sign with. */
export function sshCaPublicKey(blob: Buffer): { algorithm: string; key: KeyObject } | undefined {
  const k = parsePublicKeyBlob(blob);
  const r = new SshReader(k.fields, 'invalid SSH public key');
  if (k.type === 'ssh-ed25519') {
    return { algorithm: k.type, key: createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: r.bytes().toString('base64url') }, format: 'jwk' }) };
  }
  if (k.type === 'ecdsa-sha2-nistp256' || k.type === 'ecdsa-sha2-nistp384') {
    r.bytes();
    const q = r.bytes();
    const c = (q.length - 1) / 2;
    const crv = k.type === 'ecdsa-sha2-nistp256' ? 'P-256' : 'P-384';
    const jwk = { kty: 'EC', crv, x: q.subarray(1, 1 + c).toString('base64url'), y: q.subarray(1 + c).toString('base64url') };
    return { algorithm: k.type, key: createPublicKey({ key: jwk, format: 'jwk' }) };
  }
  return undefined;
}

/** Decodes a `-cert.pub` line (`<cert type> <base64> [comment]`) to the blob. */
export function decodeCertificateLine(line: string): Buffer {
  const m = /^\s*(\S+-cert-v01@openssh\.com)\s+([A-Za-z0-9+/]+={0,2})(?:\s.*)?$/s.exec(line.trim());
  if (!m) throw new CaError('INVALID_ARGUMENT', 'not an OpenSSH certificate line');
  const blob = Buffer.from(m[2]!, 'base64');
  if (new SshReader(blob, 'invalid SSH certificate').text() !== m[1]) {
    throw new CaError('INVALID_ARGUMENT', 'the certificate line type does not match its contents');
  }
  return blob;
}
