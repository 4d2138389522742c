import { createHash } from 'node:crypto';
import {
  DerError,
  DerReader,
  TAG,
  checkInteger,
  contextTag,
  decodeBoolean,
  decodeOctetAlignedBitString,
  decodeOid,
  decodeSmallInteger,
  decodeTime,
  readerOf,
} from './der.js';
import type { Tlv } from './der.js';

/** X.509 extension OIDs the CA writes and checks. */
export const OID = {
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** keyUsage bits (RFC 5280 4.2.1.3) as a mask: bit n of the BIT STRING is `1 << n`. */
export const KEY_USAGE = {
  digitalSignature: 1 << 0,
  nonRepudiation: 1 << 1,
  keyEncipherment: 1 << 2,
  dataEncipherment: 1 << 3,
  keyAgreement: 1 << 4,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
  encipherOnly: 1 << 7,
  decipherOnly: 1 << 8,
} as const;

export interface RawExtension {
  oid: string;
  critical: boolean;
  /** The extnValue content: the DER of the extension's own structure. */
  value: Buffer;
}

/**
 * The parts of a certificate the CA reads back. Decoded fields are undefined
 * when the extension is absent.
 */
export interface ParsedCertificate {
  der: Buffer;
  /** The exact signed bytes. */
  tbsDer: Buffer;
  /** Lower-case hex of the serial's DER INTEGER content octets. */
  serialHex: string;
  signatureAlgorithmOid: string;
  /** Raw DER Name of the issuer and of the subject. */
  issuerDer: Buffer;
  subjectDer: Buffer;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Buffer;
  /** The SubjectPublicKeyInfo's BIT STRING bytes (what RFC 5280 key identifiers hash). */
  subjectPublicKeyBits: Buffer;
  signature: Buffer;
  extensions: RawExtension[];
  basicConstraints?: { critical: boolean; ca: boolean; pathLen?: number };
  keyUsage?: { critical: boolean; mask: number };
  extKeyUsage?: { critical: boolean; oids: string[] };
  subjectAltName?: { critical: boolean; uris: string[]; dnsNames: string[]; others: number };
  /** Lower-case hex. */
  skiHex?: string;
  /** Lower-case hex of the AKI keyIdentifier. */
  akiHex?: string;
}

/** Parses a DER certificate. Throws DerError on malformed input. */
export function parseCertificate(input: Uint8Array): ParsedCertificate {
  const top = new DerReader(input);
  const certTlv = top.expect(TAG.SEQUENCE, 'Certificate');
  top.end('Certificate');
  const cert = new DerReader(certTlv.content);
  const tbsTlv = cert.expect(TAG.SEQUENCE, 'TBSCertificate');
  const sigAlgTlv = cert.expect(TAG.SEQUENCE, 'signatureAlgorithm');
  const signature = decodeOctetAlignedBitString(cert.expect(TAG.BIT_STRING, 'signatureValue').content);
  cert.end('Certificate');

  const tbs = new DerReader(tbsTlv.content);
  const version = tbs.optional(contextTag(0, true));
  if (version) {
    const v = new DerReader(version.content);
    if (decodeSmallInteger(v.expect(TAG.INTEGER, 'version').content) !== 2) throw new DerError('not a v3 certificate');
  }
  const serial = tbs.expect(TAG.INTEGER, 'serialNumber').content;
  checkInteger(serial);
  const tbsSigAlg = tbs.expect(TAG.SEQUENCE, 'signature');
  const issuer = tbs.expect(TAG.SEQUENCE, 'issuer');
  const validity = readerOf(tbs.read(), TAG.SEQUENCE, 'validity');
  const notBefore = decodeTime(validity.read());
  const notAfter = decodeTime(validity.read());
  validity.end('validity');
  const subject = tbs.expect(TAG.SEQUENCE, 'subject');
  const spki = tbs.expect(TAG.SEQUENCE, 'subjectPublicKeyInfo');
  const spkiReader = new DerReader(spki.content);
  spkiReader.expect(TAG.SEQUENCE, 'algorithm');
  const subjectPublicKeyBits = decodeOctetAlignedBitString(spkiReader.expect(TAG.BIT_STRING, 'subjectPublicKey').content);
  spkiReader.end('subjectPublicKeyInfo');
  tbs.optional(contextTag(1, false)); // issuerUniqueID
  tbs.optional(contextTag(2, false)); // subjectUniqueID
  const extensionsTlv = tbs.optional(contextTag(3, true));
  tbs.end('TBSCertificate');

  const sigAlgOid = decodeOid(new DerReader(sigAlgTlv.content).expect(TAG.OID, 'signature algorithm').content);
  if (!tbsSigAlg.raw.equals(sigAlgTlv.raw)) {
    throw new DerError('signature algorithm differs between TBSCertificate and Certificate');
  }

  const parsed: ParsedCertificate = {
    der: certTlv.raw,
    tbsDer: tbsTlv.raw,
    serialHex: serial.toString('hex'),
    signatureAlgorithmOid: sigAlgOid,
    issuerDer: issuer.raw,
    subjectDer: subject.raw,
    notBefore,
    notAfter,
    spkiDer: spki.raw,
    subjectPublicKeyBits,
    signature,
    extensions: [],
  };
  if (extensionsTlv) decodeExtensions(extensionsTlv, parsed);
  return parsed;
}

/** SHA-1 of the subjectPublicKey bits: RFC 5280 4.2.1.2 method 1. Lower-case hex. */
export function keyIdentifierHex(subjectPublicKeyBits: Uint8Array): string {
  return createHash('sha1').update(subjectPublicKeyBits).digest('hex');
}

/** The subjectPublicKey BIT STRING bytes of a DER SubjectPublicKeyInfo. */
export function subjectPublicKeyBitsOf(spkiDer: Uint8Array): Buffer {
  const r = readerOf(new DerReader(spkiDer).read(), TAG.SEQUENCE, 'subjectPublicKeyInfo');
  r.expect(TAG.SEQUENCE, 'algorithm');
  return decodeOctetAlignedBitString(r.expect(TAG.BIT_STRING, 'subjectPublicKey').content);
}

function decodeExtensions(wrapper: Tlv, out: ParsedCertificate): void {
  const outer = new DerReader(wrapper.content);
  const list = readerOf(outer.read(), TAG.SEQUENCE, 'Extensions');
  outer.end('Extensions');
  const seen = new Set<string>();
  while (!list.done) {
    const ext = readerOf(list.read(), TAG.SEQUENCE, 'Extension');
    const extOid = decodeOid(ext.expect(TAG.OID, 'extnID').content);
    const criticalTlv = ext.optional(TAG.BOOLEAN);
    const critical = criticalTlv ? decodeBoolean(criticalTlv.content) : false;
    if (criticalTlv && !critical) throw new DerError('DEFAULT FALSE encoded explicitly');
    const value = ext.expect(TAG.OCTET_STRING, 'extnValue').content;
    ext.end('Extension');
    if (seen.has(extOid)) throw new DerError(`duplicate extension ${extOid}`);
    seen.add(extOid);
    out.extensions.push({ oid: extOid, critical, value });
    decodeKnown(extOid, critical, value, out);
  }
}

function decodeKnown(extOid: string, critical: boolean, value: Buffer, out: ParsedCertificate): void {
  const r = new DerReader(value);
  switch (extOid) {
    case OID.basicConstraints: {
      const bc = readerOf(r.read(), TAG.SEQUENCE, 'BasicConstraints');
      const caTlv = bc.optional(TAG.BOOLEAN);
      const pathLenTlv = bc.optional(TAG.INTEGER);
      bc.end('BasicConstraints');
      out.basicConstraints = { critical, ca: caTlv ? decodeBoolean(caTlv.content) : false };
      if (pathLenTlv) out.basicConstraints.pathLen = decodeSmallInteger(pathLenTlv.content);
      break;
    }
    case OID.keyUsage: {
      const content = r.expect(TAG.BIT_STRING, 'KeyUsage').content;
      if (content.length < 1 || content[0]! > 7) throw new DerError('bad KeyUsage');
      let mask = 0;
      for (let i = 0; i < (content.length - 1) * 8; i++) {
        if (content[1 + (i >> 3)]! & (0x80 >> (i & 7))) mask |= 1 << i;
      }
      out.keyUsage = { critical, mask };
      break;
    }
    case OID.extKeyUsage: {
      const seq = readerOf(r.read(), TAG.SEQUENCE, 'ExtKeyUsageSyntax');
      const oids: string[] = [];
      while (!seq.done) oids.push(decodeOid(seq.expect(TAG.OID, 'KeyPurposeId').content));
      out.extKeyUsage = { critical, oids };
      break;
    }
    case OID.subjectAltName: {
      const seq = readerOf(r.read(), TAG.SEQUENCE, 'GeneralNames');
      const san = { critical, uris: [] as string[], dnsNames: [] as string[], others: 0 };
      while (!seq.done) {
        const name = seq.read();
        if (name.tag === contextTag(6, false)) san.uris.push(name.content.toString('latin1'));
        else if (name.tag === contextTag(2, false)) san.dnsNames.push(name.content.toString('latin1'));
        else san.others++;
      }
      out.subjectAltName = san;
      break;
    }
    case OID.subjectKeyIdentifier:
      out.skiHex = r.expect(TAG.OCTET_STRING, 'SubjectKeyIdentifier').content.toString('hex');
      break;
    case OID.authorityKeyIdentifier: {
      const aki = readerOf(r.read(), TAG.SEQUENCE, 'AuthorityKeyIdentifier');
      const keyId = aki.optional(contextTag(0, false));
      if (keyId) out.akiHex = keyId.content.toString('hex');
      break;
    }
    default:
      return;
  }
  r.end(extOid);
}
