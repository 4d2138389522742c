import type { KeyObject } from 'node:crypto';
import { CaError } from '../errors.js';
import type { Signer } from '../keys/signer.js';
import { randomSerial, serialHexOf, signCertificate, wholeSeconds } from './certificate.js';
import { DerReader, TAG, readerOf } from './der.js';
import {
  EMPTY_NAME,
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  extKeyUsageExtension,
  keyUsageExtension,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
} from './extensions.js';
import { KEY_USAGE, OID, keyIdentifierHex, subjectPublicKeyBitsOf } from './parse.js';

export type SubjectKeyFamily = 'ec' | 'rsa' | 'ed25519';

/** The family of a CSR's key type ('ec-p256' and 'ec-p384' are 'ec'). */
export function keyFamilyOf(keyType: 'ec-p256' | 'ec-p384' | 'ed25519' | 'rsa'): SubjectKeyFamily {
  return keyType === 'ec-p256' || keyType === 'ec-p384' ? 'ec' : keyType;
}

/** The intermediate that signs SVIDs, with the facts known when it was loaded. */
export interface X509SvidIssuer {
  /** The issuer's certificate, DER (its subject becomes the leaf's issuer). */
  certDer: Uint8Array;
  /** Only the key type and `sign` are used. */
  signer: Pick<Signer, 'keyType' | 'sign'>;
  /** The issuer's notAfter: no leaf outlives it. */
  notAfter: Date;
  /** The issuer's SubjectKeyIdentifier, lower-case hex: the leaf's AKI. */
  skiHex: string;
}

export interface IssueX509SvidParams {
  /** Already validated by the caller (a workload or agent SPIFFE ID). */
  spiffeId: string;
  dnsNames: readonly string[];
  /** The subject key; may be left out when `subjectSpkiDer` and `subjectKeyFamily` are given. */
  subjectPublicKey?: KeyObject;
  /**
   * The subject key's family, when the caller knows it without a KeyObject
   * (a parsed CSR's key type): with `subjectSpkiDer`, the leaf is built
   * without importing the key (about 85 us for P-256 with OpenSSL 3).
   */
  subjectKeyFamily?: SubjectKeyFamily;
  /**
   * The DER SubjectPublicKeyInfo of `subjectPublicKey` when the caller has
   * it (parseCsr returns it): exporting a KeyObject costs about 150 us with
   * OpenSSL 3, as much as the rest of the certificate.
   */
  subjectSpkiDer?: Uint8Array;
  issuer: X509SvidIssuer;
  ttlSeconds: number;
  now: Date;
  /** notBefore = now - backdate, for clock skew between hosts. Default 30. */
  backdateSeconds?: number;
}

export interface IssuedX509Svid {
  der: Buffer;
  /** Lower-case hex of the serial's DER INTEGER content octets. */
  serialHex: string;
  /** Whole seconds, as encoded. */
  notBefore: Date;
  notAfter: Date;
}

/*
 * Subject: empty, with a critical SAN (X509-SVID 2, RFC 5280 4.2.1.6). SPIRE
 * writes O=SPIRE; an empty subject says plainly that the URI SAN is the only
 * identity, and the -x509_strict checks of OpenSSL accept it.
 */
const BASIC_CONSTRAINTS_LEAF = basicConstraintsExtension(false);
const EXT_KEY_USAGE_TLS = extKeyUsageExtension([OID.serverAuth, OID.clientAuth]);
const KEY_USAGE_BY_KEY_TYPE: Readonly<Record<string, Buffer>> = {
  // An EC key may also do ECDH (static key agreement); an RSA key, key transport.
  ec: keyUsageExtension(KEY_USAGE.digitalSignature | KEY_USAGE.keyAgreement),
  rsa: keyUsageExtension(KEY_USAGE.digitalSignature | KEY_USAGE.keyEncipherment),
  ed25519: keyUsageExtension(KEY_USAGE.digitalSignature),
};

/** Issuer subject Names by certificate buffer, so a request only walks the issuer's DER once. */
const issuerNames = new WeakMap<Uint8Array, Buffer>();

/**
 * Builds and signs an X509-SVID: empty subject, one critical URI SAN (the
 * SPIFFE ID) plus DNS SANs, basicConstraints CA:FALSE (critical), critical
 * keyUsage digitalSignature (+keyAgreement for EC, +keyEncipherment for
 * RSA), extKeyUsage serverAuth+clientAuth, SKI (SHA-1 of the key), AKI =
 * the issuer's SKI, a 128-bit random serial. Validity: now - backdate to
 * min(now + ttl, issuer notAfter). Throws CaError('FAILED_PRECONDITION')
 * when the issuer has already expired.
 */
export async function issueX509Svid(p: IssueX509SvidParams): Promise<IssuedX509Svid> {
  const known = p.subjectKeyFamily !== undefined && p.subjectSpkiDer !== undefined;
  if (!known && p.subjectPublicKey?.type !== 'public') {
    throw new CaError('UNSUPPORTED_KEY', `the subject key must be a public key, got ${p.subjectPublicKey?.type ?? 'none'}`);
  }
  const family = known ? p.subjectKeyFamily! : (p.subjectPublicKey!.asymmetricKeyType ?? '');
  const keyUsage = KEY_USAGE_BY_KEY_TYPE[family];
  if (!keyUsage) throw new CaError('UNSUPPORTED_KEY', `unsupported subject key type ${family}`);
  if (!Number.isSafeInteger(p.ttlSeconds) || p.ttlSeconds <= 0) {
    throw new CaError('INVALID_ARGUMENT', `SVID TTL must be a positive whole number of seconds, got ${p.ttlSeconds}`);
  }
  const backdate = p.backdateSeconds ?? 30;
  const nowMs = p.now.getTime();
  const notBefore = wholeSeconds(new Date(nowMs - backdate * 1000));
  const notAfter = wholeSeconds(new Date(Math.min(nowMs + p.ttlSeconds * 1000, p.issuer.notAfter.getTime())));
  if (notAfter.getTime() <= nowMs - (nowMs % 1000)) {
    throw new CaError('FAILED_PRECONDITION', 'the signing CA certificate has expired');
  }

  const spkiDer = p.subjectSpkiDer ?? p.subjectPublicKey!.export({ type: 'spki', format: 'der' });
  const ski = Buffer.from(keyIdentifierHex(subjectPublicKeyBitsOf(spkiDer)), 'hex');
  let san: Buffer;
  try {
    san = subjectAltNameExtension({ uris: [p.spiffeId], dnsNames: p.dnsNames }, true);
  } catch (cause) {
    throw new CaError('INVALID_ARGUMENT', 'SPIFFE ID and DNS names must be printable ASCII', { cause });
  }
  const serial = randomSerial();
  const der = await signCertificate(
    {
      serial,
      issuerNameDer: issuerName(p.issuer.certDer),
      subjectNameDer: EMPTY_NAME,
      notBefore,
      notAfter,
      spkiDer,
      extensions: [
        BASIC_CONSTRAINTS_LEAF,
        keyUsage,
        EXT_KEY_USAGE_TLS,
        subjectKeyIdentifierExtension(ski),
        authorityKeyIdentifierExtension(Buffer.from(p.issuer.skiHex, 'hex')),
        san,
      ],
    },
    p.issuer.signer,
  );
  return { der, serialHex: serialHexOf(serial), notBefore, notAfter };
}

/** The subject Name of a certificate, as raw DER (not re-encoded: names must match byte for byte). */
function issuerName(certDer: Uint8Array): Buffer {
  let name = issuerNames.get(certDer);
  if (!name) {
    const cert = readerOf(new DerReader(certDer).read(), TAG.SEQUENCE, 'Certificate');
    const tbs = readerOf(cert.read(), TAG.SEQUENCE, 'TBSCertificate');
    tbs.read(); // [0] version
    tbs.read(); // serialNumber
    tbs.read(); // signature
    tbs.read(); // issuer
    tbs.read(); // validity
    name = tbs.expect(TAG.SEQUENCE, 'subject').raw;
    issuerNames.set(certDer, name);
  }
  return name;
}
