/**
 * Checks an OpenSSH certificate the CA returned (or that the agent finds on
 * disk) before anything uses it: the type asked for, the subject key sent,
 * the principals expected, a valid signature by a CA key the agent trusts,
 * and not yet expired. The agent signs nothing itself; this is its check on
 * what it is handed, as the CA checks what it mints.
 */
import { decodeCertificateLine, parseCertificate, verifyCertificateSignature, type ParsedSshCertificate } from '../../ca/ssh/parse-certificate.js';
import { parseAuthorizedKey } from '../../ca/ssh/public-key.js';
import { AgentSshError } from './errors.js';

export interface CertificateExpectation {
  type: 'user' | 'host';
  /** The subject's public key blob (type string first). */
  subjectKeyBlob: Buffer;
  /** The exact set of principals expected (order ignored); null accepts any non-empty list. */
  principals: readonly string[] | null;
  /** authorized_keys lines of the CA keys to accept; empty when not known yet (then any valid signature). */
  caKeys: readonly string[];
  now: Date;
}

/** A certificate that passed checkCertificate. */
export interface CheckedCertificate {
  /** `<type>-cert-v01@openssh.com <base64>`, without a newline. */
  line: string;
  serial: string;
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  /** The signing CA's public key blob. */
  caKeyBlob: Buffer;
  subjectKeyBlob: Buffer;
}

/** Throws AgentSshError('BAD_CERTIFICATE') naming the first check that fails. */
export function checkCertificate(line: string, want: CertificateExpectation): CheckedCertificate {
  const bad = (why: string): never => {
    throw new AgentSshError('BAD_CERTIFICATE', why);
  };
  let c: ParsedSshCertificate;
  try {
    c = parseCertificate(decodeCertificateLine(line));
  } catch (e) {
    return bad(`not a valid OpenSSH certificate: ${(e as Error).message}`);
  }
  if (c.type !== want.type) bad(`a ${c.type} certificate where a ${want.type} certificate was expected`);
  if (!c.subjectKeyBlob.equals(want.subjectKeyBlob)) bad('the certificate is for another public key');
  if (c.principals.length === 0) bad('the certificate has no principals (it would be valid for any)');
  if (want.principals && !sameSet(c.principals, want.principals)) {
    bad(`the certificate names principals ${c.principals.join(',')} instead of ${want.principals.join(',')}`);
  }
  if (!verifyCertificateSignature(c)) bad('the certificate signature does not verify');
  if (want.caKeys.length > 0 && !want.caKeys.some((k) => caKeyBlob(k)?.equals(c.caKeyBlob))) {
    bad('the certificate is signed by a CA key the agent does not trust');
  }
  const validBefore = seconds(c.validBefore);
  if (validBefore.getTime() <= want.now.getTime()) bad(`the certificate expired at ${validBefore.toISOString()}`);
  return {
    line: line.trim().split(/\s+/).slice(0, 2).join(' '),
    serial: c.serial.toString(10),
    keyId: c.keyId,
    principals: c.principals,
    validAfter: seconds(c.validAfter),
    validBefore,
    caKeyBlob: c.caKeyBlob,
    subjectKeyBlob: c.subjectKeyBlob,
  };
}

/** The key blob of an authorized_keys line, or undefined when it does not parse. */
export function caKeyBlob(line: string): Buffer | undefined {
  try {
    return parseAuthorizedKey(line).blob;
  } catch {
    return undefined;
  }
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((x) => sb.has(x));
}

// OpenSSH uses 2^64-1 for "forever"; Brevis never issues that, but a Date must stay finite.
const MAX_DATE_SECONDS = 8_640_000_000_000n;

function seconds(v: bigint): Date {
  return new Date(Number(v < MAX_DATE_SECONDS ? v : MAX_DATE_SECONDS) * 1000);
}
