import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  KeyUsage,
  NameConstraints,
  SubjectAlternativeName,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
} from '@peculiar/asn1-x509';
import type { GeneralName, Name } from '@peculiar/asn1-x509';
import { X509Certificate } from 'node:crypto';
import { SpiffeError } from './errors.js';

/**
 * The facts about one certificate that path validation and the SPIFFE rules
 * need, decoded once from DER with @peculiar/asn1-x509 (exact, unlike
 * Node's text rendering of subjectAltName).
 */
export interface CertFacts {
  readonly der: Buffer;
  readonly cert: X509Certificate;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subject: Name;
  /** No RDN in the subject. */
  readonly subjectEmpty: boolean;
  /** Subject and issuer are the same name (byte-for-byte DER). */
  readonly selfIssued: boolean;
  /** Absent extension is `undefined`, which RFC 5280 reads as cA=false. */
  readonly basicConstraints: { readonly cA: boolean; readonly pathLen: number | undefined } | undefined;
  /** `flags` uses @peculiar/asn1-x509 KeyUsageFlags bits. */
  readonly keyUsage: { readonly critical: boolean; readonly flags: number } | undefined;
  readonly extKeyUsage: readonly string[] | undefined;
  readonly sanCritical: boolean;
  /** Every GeneralName of the subjectAltName extension, in order ([] when absent). */
  readonly sans: readonly GeneralName[];
  readonly nameConstraints: NameConstraints | undefined;
  /** OIDs of critical extensions this library does not process; RFC 5280 says to reject such a certificate. */
  readonly unhandledCritical: readonly string[];
}

/** Extensions whose meaning path validation or the SPIFFE rules take into account. */
const HANDLED = new Set([
  id_ce_basicConstraints,
  id_ce_keyUsage,
  id_ce_extKeyUsage,
  id_ce_subjectAltName,
  id_ce_nameConstraints,
  id_ce_subjectKeyIdentifier,
  id_ce_authorityKeyIdentifier,
]);

/**
 * Decodes `der` into CertFacts. `what` names the certificate in error
 * messages ("certificate 1"). Throws SpiffeError('SVID_INVALID') when the
 * bytes are not exactly one certificate or an extension is malformed or
 * repeated.
 */
export function readCertFacts(der: Uint8Array, what = 'certificate'): CertFacts {
  const buf = Buffer.from(der);
  let cert: X509Certificate;
  let asn: Certificate;
  try {
    cert = new X509Certificate(buf);
    asn = AsnConvert.parse(buf, Certificate);
  } catch (e) {
    throw invalid(`${what} is not a DER X.509 certificate`, e);
  }
  if (cert.raw.length !== buf.length) throw invalid(`${what} has trailing bytes after the certificate`);
  const tbs = asn.tbsCertificate;
  const seen = new Set<string>();
  const facts = {
    der: buf,
    cert,
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    subject: tbs.subject,
    subjectEmpty: tbs.subject.length === 0,
    selfIssued: Buffer.from(AsnConvert.serialize(tbs.subject)).equals(Buffer.from(AsnConvert.serialize(tbs.issuer))),
    basicConstraints: undefined as CertFacts['basicConstraints'],
    keyUsage: undefined as CertFacts['keyUsage'],
    extKeyUsage: undefined as CertFacts['extKeyUsage'],
    sanCritical: false,
    sans: [] as GeneralName[],
    nameConstraints: undefined as NameConstraints | undefined,
    unhandledCritical: [] as string[],
  };
  for (const ext of tbs.extensions ?? []) {
    const oid = ext.extnID;
    if (seen.has(oid)) throw invalid(`${what} repeats extension ${oid}`);
    seen.add(oid);
    if (ext.critical && !HANDLED.has(oid)) facts.unhandledCritical.push(oid);
    try {
      switch (oid) {
        case id_ce_basicConstraints: {
          const bc = AsnConvert.parse(ext.extnValue, BasicConstraints);
          facts.basicConstraints = { cA: bc.cA, pathLen: bc.pathLenConstraint };
          break;
        }
        case id_ce_keyUsage:
          facts.keyUsage = { critical: ext.critical, flags: AsnConvert.parse(ext.extnValue, KeyUsage).toNumber() };
          break;
        case id_ce_extKeyUsage:
          facts.extKeyUsage = [...AsnConvert.parse(ext.extnValue, ExtendedKeyUsage)];
          break;
        case id_ce_subjectAltName:
          facts.sanCritical = ext.critical;
          facts.sans = [...AsnConvert.parse(ext.extnValue, SubjectAlternativeName)];
          break;
        case id_ce_nameConstraints:
          facts.nameConstraints = AsnConvert.parse(ext.extnValue, NameConstraints);
          break;
      }
    } catch (e) {
      throw invalid(`${what} has a malformed extension ${oid}`, e);
    }
  }
  return Object.freeze(facts);
}

/** The URI SANs of a certificate (DER or parsed), in order. */
export function getUriSans(cert: X509Certificate | Uint8Array): string[] {
  return sansOf(cert).flatMap((n) => (n.uniformResourceIdentifier === undefined ? [] : [n.uniformResourceIdentifier]));
}

/** The DNS SANs of a certificate (DER or parsed), in order. */
export function getDnsSans(cert: X509Certificate | Uint8Array): string[] {
  return sansOf(cert).flatMap((n) => (n.dNSName === undefined ? [] : [n.dNSName]));
}

function sansOf(cert: X509Certificate | Uint8Array): readonly GeneralName[] {
  return readCertFacts(cert instanceof X509Certificate ? cert.raw : cert).sans;
}

function invalid(message: string, cause?: unknown): SpiffeError {
  return new SpiffeError('SVID_INVALID', message, cause === undefined ? undefined : { cause });
}
