/**
 * OpenSSH public keys: parsing a subject key from an authorized_keys /
 * `.pub` line (validated fully, because the CA signs whatever it accepts),
 * encoding a node:crypto key as an SSH blob (the CA's own keys), and the
 * SHA256 fingerprint as `ssh-keygen -l` prints it.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { CaError } from '../errors.js';
import { SshReader, SshWriter } from './wire.js';

/** Subject key algorithms a certificate may certify. */
export type SshKeyAlgorithm = 'ssh-ed25519' | 'ecdsa-sha2-nistp256' | 'ecdsa-sha2-nistp384' | 'ssh-rsa';

export interface SshPublicKey {
  type: SshKeyAlgorithm;
  /** The whole public key blob, type string first. */
  blob: Buffer;
  /** The fields after the type string: what a certificate embeds after its nonce. */
  fields: Buffer;
  /** 256 (Ed25519, P-256), 384 (P-384) or the RSA modulus size. */
  bits: number;
  /** The comment after the key on its line ('' when none). */
  comment: string;
}

/** RSA subject keys: modulus size in bits, inclusive bounds. */
export const RSA_MIN_BITS = 2048;
export const RSA_MAX_BITS = 4096;
/** Longest authorized_keys line accepted (a 4096-bit RSA key is about 750 bytes). */
const MAX_LINE_BYTES = 16 * 1024;

const EC_CURVES = {
  'ecdsa-sha2-nistp256': { name: 'nistp256', jwk: 'P-256', coord: 32 },
  'ecdsa-sha2-nistp384': { name: 'nistp384', jwk: 'P-384', coord: 48 },
} as const;

/**
 * Parses one `type base64 [comment]` line (a `.pub` file). Throws
 * CaError('INVALID_ARGUMENT') for a malformed line or blob and
 * CaError('UNSUPPORTED_KEY') for a key type or size Brevis does not certify.
 */
export function parseAuthorizedKey(text: string): SshPublicKey {
  if (Buffer.byteLength(text) > MAX_LINE_BYTES) throw invalid(`the public key is longer than ${MAX_LINE_BYTES} bytes`);
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw invalid('this is a private key: give the public key (the .pub file)');
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length !== 1) {
    throw invalid(lines.length === 0 ? 'no public key given' : 'expected exactly one public key line (type base64 [comment])');
  }
  const m = /^\s*(\S+)\s+(\S+)(?:\s+(.*?))?\s*$/.exec(lines[0]!);
  if (!m) throw invalid('expected an OpenSSH public key line: type base64 [comment]');
  const [, type, b64, comment = ''] = m;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64!)) throw invalid('the key data is not base64');
  const blob = Buffer.from(b64!, 'base64');
  if (blob.toString('base64') !== b64) throw invalid('the key data is not canonical base64');
  const key = parsePublicKeyBlob(blob, type);
  if (key.type !== type) throw invalid(`the line says ${printable(type!)} but the key inside is ${key.type}`);
  // eslint-disable-next-line no-control-regex
  return { ...key, comment: comment.replace(/[\u0000-\u001f\u007f]/g, '') };
}

/** Parses and validates a public key blob (see parseAuthorizedKey for the errors). */
export function parsePublicKeyBlob(blob: Buffer, declaredType?: string): Omit<SshPublicKey, 'comment'> {
  const r = new SshReader(blob, 'invalid SSH public key');
  const type = r.text();
  refuseUnsupported(type, declaredType);
  const fieldsStart = r.offset;
  let bits: number;
  if (type === 'ssh-ed25519') {
    if (r.bytes().length !== 32) r.fail('an Ed25519 key must be 32 bytes');
    bits = 256;
  } else if (type === 'ecdsa-sha2-nistp256' || type === 'ecdsa-sha2-nistp384') {
    const curve = EC_CURVES[type];
    const name = r.text();
    if (name !== curve.name) r.fail(`key type ${type} names curve ${printable(name)}`);
    checkEcPoint(r.bytes(), curve.jwk, curve.coord);
    bits = curve.coord * 8;
  } else {
    const e = r.positiveMpint();
    const n = r.positiveMpint();
    bits = checkRsa(e, n);
  }
  r.end();
  return { type: type as SshKeyAlgorithm, blob: Buffer.from(blob), fields: Buffer.from(blob.subarray(fieldsStart)), bits };
}

function refuseUnsupported(type: string, declared: string | undefined): void {
  const shown = printable(declared ?? type);
  if (type.endsWith('-cert-v01@openssh.com') || declared?.endsWith('-cert-v01@openssh.com')) {
    throw new CaError('UNSUPPORTED_KEY', `${shown} is a certificate: give the plain public key (the .pub file)`);
  }
  if (type === 'ssh-ed25519' || type === 'ssh-rsa' || type in EC_CURVES) return;
  const why = type === 'ssh-dss' ? ' (DSA is obsolete and disabled in OpenSSH)' : type.startsWith('sk-') ? ' (security-key types are not supported yet)' : '';
  throw new CaError(
    'UNSUPPORTED_KEY',
    `unsupported SSH key type ${printable(type)}${why}: use ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384 or ssh-rsa (${RSA_MIN_BITS} to ${RSA_MAX_BITS} bits)`,
  );
}

function checkEcPoint(q: Buffer, crv: 'P-256' | 'P-384', coord: number): void {
  if (q.length !== 1 + 2 * coord || q[0] !== 0x04) {
    throw invalid(`an ECDSA ${crv} key must be an uncompressed point of ${1 + 2 * coord} bytes`);
  }
  try {
    // OpenSSL refuses a point that is not on the curve (or is the identity).
    createPublicKey({
      key: { kty: 'EC', crv, x: q.subarray(1, 1 + coord).toString('base64url'), y: q.subarray(1 + coord).toString('base64url') },
      format: 'jwk',
    });
  } catch {
    throw invalid(`the ECDSA ${crv} public key is not a point on the curve`);
  }
}

/** Returns the modulus size in bits. */
function checkRsa(e: Buffer, n: Buffer): number {
  const bits = n.length === 0 ? 0 : (n.length - 1) * 8 + (32 - Math.clz32(n[0]!));
  if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
    throw new CaError('UNSUPPORTED_KEY', `RSA key of ${bits} bits: Brevis certifies RSA keys of ${RSA_MIN_BITS} to ${RSA_MAX_BITS} bits`);
  }
  if ((n[n.length - 1]! & 1) === 0) throw invalid('the RSA modulus is even');
  // SP 800-56B: an odd public exponent with 2^16 < e < 2^256.
  const eBig = e.length === 0 ? 0n : BigInt(`0x${e.toString('hex')}`);
  if (eBig % 2n === 0n || eBig <= 0x10000n || e.length > 32) {
    throw new CaError('UNSUPPORTED_KEY', 'RSA public exponent must be odd and between 2^16 and 2^256 (65537 is usual)');
  }
  return bits;
}

/** The OpenSSH blob of a node:crypto public (or private) key: Ed25519, P-256, P-384 or RSA. */
export function sshPublicKeyBlob(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  const b = (s: string | undefined) => Buffer.from(s ?? '', 'base64url');
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return new SshWriter().string('ssh-ed25519').string(b(jwk.x)).toBuffer();
  if (jwk.kty === 'EC' && (jwk.crv === 'P-256' || jwk.crv === 'P-384')) {
    const name = jwk.crv === 'P-256' ? 'nistp256' : 'nistp384';
    const q = Buffer.concat([Buffer.from([4]), b(jwk.x), b(jwk.y)]);
    return new SshWriter().string(`ecdsa-sha2-${name}`).string(name).string(q).toBuffer();
  }
  if (jwk.kty === 'RSA') return new SshWriter().string('ssh-rsa').mpint(b(jwk.e)).mpint(b(jwk.n)).toBuffer();
  throw new CaError('UNSUPPORTED_KEY', `no OpenSSH encoding for a ${pub.asymmetricKeyType} key`);
}

/** `type base64 [comment]`, as in authorized_keys, known_hosts and .pub files. */
export function formatAuthorizedKey(blob: Buffer, comment = ''): string {
  const type = new SshReader(blob, 'public key').text();
  return `${type} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

/** The key's fingerprint as `ssh-keygen -l` prints it: `SHA256:` + unpadded base64. */
export function sshFingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function invalid(msg: string): CaError {
  return new CaError('INVALID_ARGUMENT', `invalid SSH public key: ${msg}`);
}

function printable(s: string): string {
  const t = s.slice(0, 64).replace(/[^\x20-\x7e]/g, '?');
  return `'${t}'`;
}
