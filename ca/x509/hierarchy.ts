import { parseTrustDomain, trustDomainId } from '../../spiffe/id.js';
import { CaError } from '../errors.js';
import type { Signer } from '../keys/signer.js';
import { randomSerial, serialHexOf, signCertificate, wholeSeconds } from './certificate.js';
import { DerError } from './der.js';
import {
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  encodeName,
  keyUsageExtension,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
  trustDomainNameConstraintsExtension,
} from './extensions.js';
import { KEY_USAGE, keyIdentifierHex, parseCertificate, subjectPublicKeyBitsOf } from './parse.js';
import type { ParsedCertificate } from './parse.js';

/** A CA certificate just made, with the facts callers record about it. */
export interface CaCertificate {
  der: Buffer;
  /** SubjectKeyIdentifier, lower-case hex: the authority's id. */
  skiHex: string;
  serialHex: string;
  /** The subject as text, e.g. `O=Brevis, CN=example.org Root CA 1a2b3c4d`. */
  subject: string;
  /** Whole seconds, as encoded. */
  notBefore: Date;
  notAfter: Date;
}

export interface CreateRootParams {
  trustDomain: string;
  signer: Signer;
  notBefore: Date;
  notAfter: Date;
  /** Overrides the generated common name. */
  subjectCn?: string;
}

export interface CreateIntermediateParams {
  trustDomain: string;
  /** The intermediate's key; only its public half is used. */
  subjectSigner: Pick<Signer, 'spkiDer'>;
  /** The issuing (root) certificate, DER. */
  issuerCertDer: Uint8Array;
  /** The issuer's key; must match `issuerCertDer`. */
  issuerSigner: Signer;
  notBefore: Date;
  /** Capped at the issuer's notAfter. */
  notAfter: Date;
  subjectCn?: string;
}

const CA_KEY_USAGE = KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign;
/** X.520 ub-common-name. */
const MAX_CN_LENGTH = 64;

/**
 * A self-signed root: basicConstraints CA (critical, no path length),
 * keyUsage keyCertSign+cRLSign (critical), URI SAN `spiffe://<td>`, SKI and
 * AKI (both the SHA-1 of the key), a 128-bit random serial.
 */
export async function createRootCertificate(p: CreateRootParams): Promise<CaCertificate> {
  const td = checkTrustDomain(p.trustDomain);
  const keyId = subjectPublicKeyBitsOf(p.signer.spkiDer);
  const skiHex = keyIdentifierHex(keyId);
  const ski = Buffer.from(skiHex, 'hex');
  const cn = p.subjectCn ?? commonName(td, 'Root CA', skiHex);
  const name = encodeName([
    ['O', 'Brevis'],
    ['CN', cn],
  ]);
  const { notBefore, notAfter } = validity(p.notBefore, p.notAfter);
  const serial = randomSerial();
  const der = await signCertificate(
    {
      serial,
      issuerNameDer: name,
      subjectNameDer: name,
      notBefore,
      notAfter,
      spkiDer: p.signer.spkiDer,
      extensions: [
        basicConstraintsExtension(true),
        keyUsageExtension(CA_KEY_USAGE),
        subjectKeyIdentifierExtension(ski),
        authorityKeyIdentifierExtension(ski),
        subjectAltNameExtension({ uris: [trustDomainId(td)], dnsNames: [] }, false),
      ],
    },
    p.signer,
  );
  return { der, skiHex, serialHex: serialHexOf(serial), subject: `O=Brevis, CN=${cn}`, notBefore, notAfter };
}

/**
 * An intermediate signed by `issuerCertDer`'s key: basicConstraints CA with
 * pathLenConstraint 0 (it signs only leaves), keyUsage keyCertSign+cRLSign,
 * a critical URI name constraint permitting only the trust domain, URI SAN
 * `spiffe://<td>`, SKI, and AKI = the issuer's SKI.
 */
export async function createIntermediateCertificate(p: CreateIntermediateParams): Promise<CaCertificate> {
  const td = checkTrustDomain(p.trustDomain);
  const issuer = parseIssuer(p.issuerCertDer);
  if (!Buffer.from(p.issuerSigner.spkiDer).equals(issuer.spkiDer)) {
    throw new CaError('FAILED_PRECONDITION', 'the issuer signer does not hold the issuer certificate key');
  }
  const issuerSki = issuer.skiHex ?? keyIdentifierHex(issuer.subjectPublicKeyBits);
  const skiHex = keyIdentifierHex(subjectPublicKeyBitsOf(p.subjectSigner.spkiDer));
  const cn = p.subjectCn ?? commonName(td, 'Intermediate CA', skiHex);
  const requestedNotAfter = p.notAfter.getTime() > issuer.notAfter.getTime() ? issuer.notAfter : p.notAfter;
  const { notBefore, notAfter } = validity(p.notBefore, requestedNotAfter);
  const serial = randomSerial();
  const der = await signCertificate(
    {
      serial,
      issuerNameDer: issuer.subjectDer,
      subjectNameDer: encodeName([
        ['O', 'Brevis'],
        ['CN', cn],
      ]),
      notBefore,
      notAfter,
      spkiDer: p.subjectSigner.spkiDer,
      extensions: [
        basicConstraintsExtension(true, 0),
        keyUsageExtension(CA_KEY_USAGE),
        trustDomainNameConstraintsExtension(td),
        subjectKeyIdentifierExtension(Buffer.from(skiHex, 'hex')),
        authorityKeyIdentifierExtension(Buffer.from(issuerSki, 'hex')),
        subjectAltNameExtension({ uris: [trustDomainId(td)], dnsNames: [] }, false),
      ],
    },
    p.issuerSigner,
  );
  return { der, skiHex, serialHex: serialHexOf(serial), subject: `O=Brevis, CN=${cn}`, notBefore, notAfter };
}

/**
 * `<td> <role> <first 8 hex of the SKI>`: unique per key, so two
 * generations of a CA never share a subject. A trust domain too long for
 * the 64-character limit is left out (it is in the URI SAN anyway).
 */
function commonName(td: string, role: string, skiHex: string): string {
  const tail = `${role} ${skiHex.slice(0, 8)}`;
  const full = `${td} ${tail}`;
  return full.length <= MAX_CN_LENGTH ? full : tail;
}

function checkTrustDomain(td: string): string {
  try {
    return parseTrustDomain(td);
  } catch (cause) {
    throw new CaError('INVALID_ARGUMENT', `invalid trust domain ${JSON.stringify(td)}`, { cause });
  }
}

function validity(notBefore: Date, notAfter: Date): { notBefore: Date; notAfter: Date } {
  const nb = wholeSeconds(notBefore);
  const na = wholeSeconds(notAfter);
  if (na.getTime() <= nb.getTime()) {
    throw new CaError('INVALID_ARGUMENT', 'CA certificate validity is empty (notAfter is not after notBefore)');
  }
  return { notBefore: nb, notAfter: na };
}

function parseIssuer(der: Uint8Array): ParsedCertificate {
  let issuer: ParsedCertificate;
  try {
    issuer = parseCertificate(der);
  } catch (cause) {
    if (cause instanceof DerError) {
      throw new CaError('FAILED_PRECONDITION', `issuer certificate is malformed: ${cause.message}`, { cause });
    }
    throw cause;
  }
  if (!issuer.basicConstraints?.ca || !((issuer.keyUsage?.mask ?? 0) & KEY_USAGE.keyCertSign)) {
    throw new CaError('FAILED_PRECONDITION', 'issuer certificate is not a CA certificate');
  }
  return issuer;
}
