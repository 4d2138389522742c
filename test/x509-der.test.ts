import { generateKeyPairSync, verify } from 'node:crypto';
import * as asn1 from '@peculiar/asn1-x509';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { describe, expect, test } from 'vitest';
import { signerFromPkcs8 } from '../ca/keys/signer.js';
import { signCertificate } from '../ca/x509/certificate.js';
import {
  DerReader,
  TAG,
  decodeOid,
  decodeTime,
  oid,
  smallInteger,
  time,
  tlv,
  unsignedInteger,
} from '../ca/x509/der.js';
import {
  EMPTY_NAME,
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  encodeName,
  extKeyUsageExtension,
  keyUsageExtension,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
} from '../ca/x509/extensions.js';
import { KEY_USAGE, OID, parseCertificate } from '../ca/x509/parse.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('DER encoding', () => {
  test('lengths use the short form below 128 and the shortest long form above', () => {
    expect(hex(tlv(0x04, Buffer.alloc(127))).slice(0, 4)).toBe('047f');
    expect(hex(tlv(0x04, Buffer.alloc(128))).slice(0, 6)).toBe('048180');
    expect(hex(tlv(0x04, Buffer.alloc(255))).slice(0, 6)).toBe('0481ff');
    expect(hex(tlv(0x04, Buffer.alloc(256))).slice(0, 8)).toBe('04820100');
    expect(hex(tlv(0x04, Buffer.alloc(65536))).slice(0, 10)).toBe('0483010000');
  });

  test('integers are minimal and positive', () => {
    expect(hex(unsignedInteger(Buffer.from([0x80])))).toBe('02020080');
    expect(hex(unsignedInteger(Buffer.from([0, 0, 1])))).toBe('020101');
    expect(hex(unsignedInteger(Buffer.from([0, 0x80])))).toBe('02020080');
    expect(hex(unsignedInteger(Buffer.from([0])))).toBe('020100');
    expect(hex(smallInteger(0))).toBe('020100');
    expect(hex(smallInteger(256))).toBe('02020100');
  });

  test('object identifiers round-trip', () => {
    expect(hex(oid('1.2.840.113549.1.1.11'))).toBe('06092a864886f70d01010b');
    expect(hex(oid('2.5.29.17'))).toBe('0603551d11');
    for (const o of ['1.2.840.10045.4.3.2', '1.3.101.112', '2.999.1', '0.9.2342.19200300.100.1.1']) {
      expect(decodeOid(new DerReader(oid(o)).read().content)).toBe(o);
    }
  });

  test('times are UTCTime through 2049 and GeneralizedTime from 2050, in whole seconds', () => {
    const t2049 = time(new Date('2049-12-31T23:59:59.999Z'));
    expect(t2049.subarray(2).toString('latin1')).toBe('491231235959Z');
    expect(t2049[0]).toBe(TAG.UTC_TIME);
    const t2050 = time(new Date('2050-01-01T00:00:00Z'));
    expect(t2050.subarray(2).toString('latin1')).toBe('20500101000000Z');
    expect(t2050[0]).toBe(TAG.GENERALIZED_TIME);
    expect(decodeTime(new DerReader(t2049).read()).toISOString()).toBe('2049-12-31T23:59:59.000Z');
    expect(decodeTime(new DerReader(t2050).read()).toISOString()).toBe('2050-01-01T00:00:00.000Z');
    expect(decodeTime(new DerReader(time(new Date('1999-06-01T00:00:00Z'))).read()).getUTCFullYear()).toBe(1999);
  });

  test('keyUsage bit strings drop trailing zero bits', () => {
    expect(hex(keyUsageExtension(KEY_USAGE.digitalSignature)).endsWith('040403020780')).toBe(true);
    expect(hex(keyUsageExtension(KEY_USAGE.digitalSignature | KEY_USAGE.keyAgreement)).endsWith('040403020388')).toBe(true);
    expect(hex(keyUsageExtension(KEY_USAGE.digitalSignature | KEY_USAGE.keyEncipherment)).endsWith('0404030205a0')).toBe(true);
    expect(hex(keyUsageExtension(KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign)).endsWith('040403020106')).toBe(true);
  });
});

describe('DER reading', () => {
  test.each([
    ['an indefinite length', '3080'],
    ['a long-form length below 128', '04810100'],
    ['a length with a leading zero byte', '0482000100'],
    ['a length past the end', '040500'],
    ['a lone tag', '04'],
  ])('refuses %s', (_what, input) => {
    expect(() => new DerReader(Buffer.from(input, 'hex')).read()).toThrow();
  });

  test('refuses trailing data where a structure must end', () => {
    const r = new DerReader(Buffer.from('05000500', 'hex'));
    r.read();
    expect(() => r.end('x')).toThrow(/trailing data after x/);
  });
});

describe('certificates', () => {
  test('the TBSCertificate is byte-for-byte what @peculiar/asn1-x509 encodes for the same fields', async () => {
    // Ed25519 signatures are deterministic, so the whole certificate is pinned by its inputs.
    const { privateKey } = generateKeyPairSync('ed25519');
    const signer = await signerFromPkcs8(privateKey.export({ type: 'pkcs8', format: 'der' }));
    const subject = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    const serial = Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex');
    const keyId = Buffer.alloc(20, 0xab);
    const issuerName = encodeName([
      ['O', 'Brevis'],
      ['CN', 'example.org Intermediate CA abababab'],
    ]);
    const notBefore = new Date('2030-01-01T00:00:00Z');
    const notAfter = new Date('2050-06-01T00:00:00Z');
    const fields = {
        serial,
        issuerNameDer: issuerName,
        subjectNameDer: EMPTY_NAME,
        notBefore,
        notAfter,
        spkiDer: subject,
        extensions: [
          basicConstraintsExtension(false),
          keyUsageExtension(KEY_USAGE.digitalSignature),
          extKeyUsageExtension([OID.serverAuth, OID.clientAuth]),
          subjectKeyIdentifierExtension(keyId),
          authorityKeyIdentifierExtension(keyId),
          subjectAltNameExtension({ uris: ['spiffe://example.org/w'], dnsNames: ['w.example.org'] }, true),
        ],
    };
    const der = await signCertificate(fields, signer);

    const ext = (id: string, critical: boolean, value: object) =>
      new asn1.Extension({ extnID: id, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
    const rdn = (type: string, value: string) =>
      new asn1.RelativeDistinguishedName([new asn1.AttributeTypeAndValue({ type, value: new asn1.AttributeValue({ utf8String: value }) })]);
    const reference = new asn1.TBSCertificate({
      version: asn1.Version.v3,
      serialNumber: new Uint8Array(serial).buffer,
      signature: new asn1.AlgorithmIdentifier({ algorithm: '1.3.101.112' }),
      issuer: new asn1.Name([rdn('2.5.4.10', 'Brevis'), rdn('2.5.4.3', 'example.org Intermediate CA abababab')]),
      validity: new asn1.Validity({ notBefore, notAfter }),
      subject: new asn1.Name(),
      subjectPublicKeyInfo: AsnConvert.parse(subject, asn1.SubjectPublicKeyInfo),
      extensions: new asn1.Extensions([
        ext(OID.basicConstraints, true, new asn1.BasicConstraints()),
        ext(OID.keyUsage, true, new asn1.KeyUsage(asn1.KeyUsageFlags.digitalSignature)),
        ext(OID.extKeyUsage, false, new asn1.ExtendedKeyUsage([OID.serverAuth, OID.clientAuth])),
        ext(OID.subjectKeyIdentifier, false, new asn1.SubjectKeyIdentifier(new Uint8Array(keyId).buffer)),
        ext(OID.authorityKeyIdentifier, false, new asn1.AuthorityKeyIdentifier({ keyIdentifier: new asn1.KeyIdentifier(new Uint8Array(keyId).buffer) })),
        ext(OID.subjectAltName, true, new asn1.SubjectAlternativeName([
          new asn1.GeneralName({ uniformResourceIdentifier: 'spiffe://example.org/w' }),
          new asn1.GeneralName({ dNSName: 'w.example.org' }),
        ])),
      ]),
    });
    const parsed = parseCertificate(der);
    expect(hex(parsed.tbsDer)).toBe(hex(new Uint8Array(AsnConvert.serialize(reference))));
    expect(verify(null, parsed.tbsDer, signer.publicKeyObject, parsed.signature)).toBe(true);
    expect(parsed.notAfter.toISOString()).toBe('2050-06-01T00:00:00.000Z');
    // Signing the same inputs again gives the same bytes (deterministic Ed25519).
    expect(hex(await signCertificate(fields, signer))).toBe(hex(der));
  });
});
