/**
 * The OpenSSH certificate encoder, written from PROTOCOL.certkeys
 * (draft-miller-ssh-cert). A certificate is one SSH blob:
 *
 *   string  "<key type>-cert-v01@openssh.com"
 *   string  nonce
 *   ...     the subject key's fields (as in its public key blob)
 *   uint64  serial
 *   uint32  type (1 user, 2 host)
 *   string  key id
 *   string  valid principals (a list of strings)
 *   uint64  valid after, uint64 valid before (seconds since the epoch)
 *   string  critical options, string extensions (name/data pairs, sorted)
 *   string  reserved (empty)
 *   string  signature key (the CA's public key blob)
 *   string  signature over everything above
 *
 * The encoder is deterministic: nonce and serial come from the caller, so
 * fixed inputs give fixed bytes (golden vectors pin them).
 */
import { CaError } from '../errors.js';
import { byteOrder } from './options.js';
import type { SshPublicKey } from './public-key.js';
import type { SshCaSigner } from './ssh-signer.js';
import { SshWriter, encodeStringList } from './wire.js';

export type SshCertType = 'user' | 'host';

/** The wire value of each certificate type. */
export const SSH_CERT_TYPE_CODE: { readonly [T in SshCertType]: number } = { user: 1, host: 2 };

/** Critical options Brevis sets (user certificates only). */
export interface SshCriticalOptions {
  forceCommand?: string | undefined;
  /** Comma-separated CIDR list, already validated. */
  sourceAddress?: string | undefined;
}

export interface SshCertificateTemplate {
  type: SshCertType;
  subject: Pick<SshPublicKey, 'type' | 'fields'>;
  /** 16 to 32 random bytes; Brevis uses 32. */
  nonce: Buffer;
  serial: bigint;
  keyId: string;
  principals: readonly string[];
  /** Seconds since the epoch. */
  validAfter: number;
  validBefore: number;
  /** User certificates only. */
  criticalOptions?: SshCriticalOptions;
  /** Extension names (flags, empty data); user certificates only. */
  extensions?: readonly string[];
}

/** The certificate type string for a subject key type. */
export function certTypeName(keyType: string): string {
  return `${keyType}-cert-v01@openssh.com`;
}

/**
 * Encodes and signs a certificate. Refuses (CaError 'INVALID_ARGUMENT') an
 * empty principal list, options or extensions on a host certificate, and an
 * empty or inverted validity window.
 */
export async function encodeCertificate(t: SshCertificateTemplate, ca: SshCaSigner): Promise<Buffer> {
  if (t.principals.length === 0) {
    throw new CaError('INVALID_ARGUMENT', 'refusing to issue an SSH certificate without principals (it would be valid for any)');
  }
  if (t.nonce.length < 16 || t.nonce.length > 32) throw new TypeError('the nonce must be 16 to 32 bytes');
  if (!Number.isSafeInteger(t.validAfter) || !Number.isSafeInteger(t.validBefore) || t.validAfter < 0 || t.validAfter >= t.validBefore) {
    throw new CaError('INVALID_ARGUMENT', 'the certificate validity window is empty or invalid');
  }
  const options = encodeCriticalOptions(t.criticalOptions ?? {});
  const extensions = encodeExtensions(t.extensions ?? []);
  if (t.type === 'host' && (options.length > 0 || extensions.length > 0)) {
    throw new CaError('INVALID_ARGUMENT', 'host certificates carry no critical options or extensions');
  }
  const body = new SshWriter()
    .string(certTypeName(t.subject.type))
    .string(t.nonce)
    .raw(t.subject.fields)
    .uint64(t.serial)
    .uint32(SSH_CERT_TYPE_CODE[t.type])
    .string(t.keyId)
    .string(encodeStringList(t.principals))
    .uint64(BigInt(t.validAfter))
    .uint64(BigInt(t.validBefore))
    .string(options)
    .string(extensions)
    .string('')
    .string(ca.publicKeyBlob)
    .toBuffer();
  const signature = await ca.sign(body);
  return new SshWriter().raw(body).string(signature).toBuffer();
}

/** Critical options, sorted by name; each value is itself an SSH string inside the data. */
function encodeCriticalOptions(o: SshCriticalOptions): Buffer {
  const pairs: Array<[string, string]> = [];
  if (o.forceCommand !== undefined) pairs.push(['force-command', o.forceCommand]);
  if (o.sourceAddress !== undefined) pairs.push(['source-address', o.sourceAddress]);
  pairs.sort((a, b) => byteOrder(a[0], b[0]));
  const w = new SshWriter();
  for (const [name, value] of pairs) w.string(name).string(new SshWriter().string(value).toBuffer());
  return w.toBuffer();
}

/** Flag extensions (empty data), sorted by name, each at most once. */
function encodeExtensions(names: readonly string[]): Buffer {
  const sorted = [...names].sort(byteOrder);
  if (sorted.some((n, i) => i > 0 && n === sorted[i - 1])) throw new CaError('INVALID_ARGUMENT', 'an SSH extension is listed twice');
  const w = new SshWriter();
  for (const n of sorted) w.string(n).string('');
  return w.toBuffer();
}

/** A certificate as one `-cert.pub` line: `<cert type> <base64> [comment]`. */
export function formatCertificate(blob: Buffer, certType: string, comment = ''): string {
  return `${certType} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}
