import 'reflect-metadata';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } from '@peculiar/asn1-x509';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  TAG,
  bitString,
  booleanTrue,
  contextTag,
  octetString,
  oid,
  sequence,
  set,
  smallInteger,
  tlv,
  utf8String,
} from './der.js';
import { OID } from './parse.js';

/**
 * DER encoders for the X.509 pieces the CA writes. Each returns a complete
 * `Extension` (or `Name`) ready to drop into a TBSCertificate.
 */

/** `Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }`. */
export function extension(extnId: string, critical: boolean, valueDer: Uint8Array): Buffer {
  return critical
    ? sequence(oid(extnId), booleanTrue(), octetString(valueDer))
    : sequence(oid(extnId), octetString(valueDer));
}

/** basicConstraints, always critical. `pathLen` only for a CA. */
export function basicConstraintsExtension(ca: boolean, pathLen?: number): Buffer {
  const parts: Buffer[] = [];
  if (ca) parts.push(booleanTrue());
  if (ca && pathLen !== undefined) parts.push(smallInteger(pathLen));
  return extension(OID.basicConstraints, true, sequence(...parts));
}

/** keyUsage, always critical; `mask` from KEY_USAGE. DER: trailing zero bits dropped. */
export function keyUsageExtension(mask: number): Buffer {
  if (mask <= 0 || mask >= 1 << 9) throw new RangeError('bad key usage mask');
  const highest = 31 - Math.clz32(mask);
  const bytes = Buffer.alloc((highest >> 3) + 1);
  for (let i = 0; i <= highest; i++) if (mask & (1 << i)) bytes[i >> 3]! |= 0x80 >> (i & 7);
  return extension(OID.keyUsage, true, bitString(bytes, 7 - (highest & 7)));
}

/** extKeyUsage (not critical, as is usual for SVIDs). */
export function extKeyUsageExtension(purposes: readonly string[]): Buffer {
  return extension(OID.extKeyUsage, false, sequence(...purposes.map(oid)));
}

export function subjectKeyIdentifierExtension(keyId: Uint8Array): Buffer {
  return extension(OID.subjectKeyIdentifier, false, octetString(keyId));
}

/** AKI with only the keyIdentifier (RFC 5280 4.2.1.1; never critical). */
export function authorityKeyIdentifierExtension(keyId: Uint8Array): Buffer {
  return extension(OID.authorityKeyIdentifier, false, sequence(tlv(contextTag(0, false), keyId)));
}

/** subjectAltName with URIs then DNS names. Critical when the subject is empty (RFC 5280 4.2.1.6). */
export function subjectAltNameExtension(
  names: { uris: readonly string[]; dnsNames: readonly string[] },
  critical: boolean,
): Buffer {
  const general = [
    ...names.uris.map((u) => tlv(contextTag(6, false), ia5(u))),
    ...names.dnsNames.map((d) => tlv(contextTag(2, false), ia5(d))),
  ];
  if (general.length === 0) throw new RangeError('subjectAltName needs at least one name');
  return extension(OID.subjectAltName, critical, sequence(...general));
}

/**
 * Critical nameConstraints permitting only URIs whose host is exactly
 * `trustDomain` (RFC 5280 4.2.1.10: a URI constraint without a leading
 * period names one host), so the intermediate cannot vouch for another
 * trust domain.
 */
export function trustDomainNameConstraintsExtension(trustDomain: string): Buffer {
  const nc = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees([
      new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: trustDomain }) }),
    ]),
  });
  return extension(OID.nameConstraints, true, Buffer.from(AsnConvert.serialize(nc)));
}

const NAME_ATTRIBUTE = { O: '2.5.4.10', CN: '2.5.4.3' } as const;

/** A DER Name, one attribute per RDN in the given order, values as UTF8String. */
export function encodeName(attributes: ReadonlyArray<readonly [keyof typeof NAME_ATTRIBUTE, string]>): Buffer {
  return sequence(...attributes.map(([k, v]) => set(sequence(oid(NAME_ATTRIBUTE[k]), utf8String(v)))));
}

/** The empty Name (an SVID's subject). */
export const EMPTY_NAME: Buffer = Buffer.from([TAG.SEQUENCE, 0]);

/** IA5String content octets. */
function ia5(s: string): Buffer {
  // IA5String is 7-bit: refuse anything else rather than silently mangle it.
  if (!/^[\x21-\x7e]+$/.test(s)) throw new RangeError(`not a printable ASCII name: ${JSON.stringify(s)}`);
  return Buffer.from(s, 'latin1');
}
