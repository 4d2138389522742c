import { CaError } from '../errors.js';
import { DerError } from './der.js';
import { KEY_USAGE, OID, keyIdentifierHex, parseCertificate } from './parse.js';
import type { ParsedCertificate } from './parse.js';

/** What the minted SVID must say. */
export interface ExpectedSvid {
  spiffeId: string;
  dnsNames: readonly string[];
  /** Compared in whole seconds. */
  notAfter: Date;
  /** Compared in whole seconds when given. */
  notBefore?: Date;
  /** The issuer's SubjectKeyIdentifier, lower-case hex. */
  issuerSkiHex: string;
  /** The requested subject key (DER SubjectPublicKeyInfo), compared byte for byte when given. */
  subjectSpkiDer?: Uint8Array;
}

/** Extensions an SVID may carry; any other critical one would be a bug. */
const KNOWN_EXTENSIONS = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.subjectAltName,
]);

/**
 * Parses a freshly minted X509-SVID back and checks it against the X509-SVID
 * standard and the request, as spire's credvalidator does, so that a bug in
 * the builder can never reach a workload. Throws CaError('INTERNAL') naming
 * the first failed rule. Does not verify the signature.
 */
export function checkMintedSvid(der: Uint8Array, expected: ExpectedSvid): ParsedCertificate {
  let cert: ParsedCertificate;
  try {
    cert = parseCertificate(der);
  } catch (cause) {
    if (cause instanceof DerError) fail(`does not parse: ${cause.message}`, cause);
    throw cause;
  }
  const san = cert.subjectAltName;
  if (!san) fail('has no subjectAltName');
  if (san.uris.length !== 1) fail(`has ${san.uris.length} URI SANs, want exactly 1`);
  if (san.uris[0] !== expected.spiffeId) fail('URI SAN differs from the requested SPIFFE ID');
  if (!sameList(san.dnsNames, expected.dnsNames)) fail('DNS SANs differ from the request');
  if (san.others !== 0) fail('has SANs other than URI and DNS');
  if (isEmptyName(cert.subjectDer) && !san.critical) fail('has an empty subject and a non-critical SAN');

  const bc = cert.basicConstraints;
  if (!bc) fail('has no basicConstraints');
  if (bc.ca) fail('is a CA certificate');
  if (!bc.critical) fail('basicConstraints is not critical');

  const ku = cert.keyUsage;
  if (!ku) fail('has no keyUsage');
  if (!ku.critical) fail('keyUsage is not critical');
  if (!(ku.mask & KEY_USAGE.digitalSignature)) fail('keyUsage lacks digitalSignature');
  if (ku.mask & (KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign)) fail('keyUsage has keyCertSign or cRLSign');

  const eku = cert.extKeyUsage;
  if (!eku || !eku.oids.includes(OID.serverAuth) || !eku.oids.includes(OID.clientAuth)) {
    fail('extKeyUsage lacks serverAuth or clientAuth');
  }

  if (seconds(cert.notAfter) !== seconds(expected.notAfter)) fail('notAfter differs from the expected one');
  if (expected.notBefore && seconds(cert.notBefore) !== seconds(expected.notBefore)) {
    fail('notBefore differs from the expected one');
  }
  if (cert.notBefore.getTime() >= cert.notAfter.getTime()) fail('has an empty validity period');

  if (expected.subjectSpkiDer && !cert.spkiDer.equals(expected.subjectSpkiDer)) fail('carries another public key');
  if (cert.akiHex !== expected.issuerSkiHex.toLowerCase()) fail("AKI is not the issuer's SKI");
  if (cert.skiHex !== keyIdentifierHex(cert.subjectPublicKeyBits)) fail("SKI is not the SHA-1 of the subject key");

  for (const ext of cert.extensions) {
    if (ext.critical && !KNOWN_EXTENSIONS.has(ext.oid)) fail(`has an unexpected critical extension ${ext.oid}`);
  }
  return cert;
}

function fail(reason: string, cause?: unknown): never {
  throw new CaError('INTERNAL', `minted X509-SVID failed its self-check: it ${reason}`, { cause });
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function isEmptyName(nameDer: Buffer): boolean {
  return nameDer.length === 2;
}

function seconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}
