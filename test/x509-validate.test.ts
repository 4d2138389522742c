import { generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import { isCaError } from '../ca/errors.js';
import { generateSigner } from '../ca/keys/signer.js';
import type { LocalSigner } from '../ca/keys/signer.js';
import { randomSerial, signCertificate } from '../ca/x509/certificate.js';
import { contextTag, sequence, tlv } from '../ca/x509/der.js';
import {
  EMPTY_NAME,
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  encodeName,
  extKeyUsageExtension,
  extension,
  keyUsageExtension,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
} from '../ca/x509/extensions.js';
import { createIntermediateCertificate, createRootCertificate } from '../ca/x509/hierarchy.js';
import type { CaCertificate } from '../ca/x509/hierarchy.js';
import { issueX509Svid } from '../ca/x509/leaf.js';
import { KEY_USAGE, OID, keyIdentifierHex, subjectPublicKeyBitsOf } from '../ca/x509/parse.js';
import { checkMintedSvid } from '../ca/x509/validate.js';

const ID = 'spiffe://example.org/api';
const DNS = ['api.example.org'];
const NOT_BEFORE = new Date('2031-03-01T10:00:00Z');
const NOT_AFTER = new Date('2031-03-01T11:00:00Z');

let rootSigner: LocalSigner;
let signer: LocalSigner;
let intermediate: CaCertificate;
const subjectSpki = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
const subjectKeyId = Buffer.from(keyIdentifierHex(subjectPublicKeyBitsOf(subjectSpki)), 'hex');

beforeAll(async () => {
  rootSigner = await generateSigner('ec-p256');
  signer = await generateSigner('ec-p256');
  const root = await createRootCertificate({ trustDomain: 'example.org', signer: rootSigner, notBefore: new Date('2031-01-01Z'), notAfter: new Date('2032-01-01Z') });
  intermediate = await createIntermediateCertificate({
    trustDomain: 'example.org',
    subjectSigner: signer,
    issuerCertDer: root.der,
    issuerSigner: rootSigner,
    notBefore: new Date('2031-01-01Z'),
    notAfter: new Date('2031-12-01Z'),
  });
});

const expected = () => ({ spiffeId: ID, dnsNames: DNS, notAfter: NOT_AFTER, notBefore: NOT_BEFORE, issuerSkiHex: intermediate.skiHex, subjectSpkiDer: subjectSpki });

/** The extensions issueX509Svid writes for an EC key, in its order; tests replace or drop them. */
function goodExtensions(): Buffer[] {
  return [
    basicConstraintsExtension(false),
    keyUsageExtension(KEY_USAGE.digitalSignature | KEY_USAGE.keyAgreement),
    extKeyUsageExtension([OID.serverAuth, OID.clientAuth]),
    subjectKeyIdentifierExtension(subjectKeyId),
    authorityKeyIdentifierExtension(Buffer.from(intermediate.skiHex, 'hex')),
    subjectAltNameExtension({ uris: [ID], dnsNames: DNS }, true),
  ];
}

async function forge(options: { extensions?: Buffer[]; subject?: Buffer } = {}): Promise<Buffer> {
  return signCertificate(
    {
      serial: randomSerial(),
      issuerNameDer: encodeName([['CN', 'whatever']]),
      subjectNameDer: options.subject ?? EMPTY_NAME,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      spkiDer: subjectSpki,
      extensions: options.extensions ?? goodExtensions(),
    },
    signer,
  );
}

function with_(index: number, replacement: Buffer | null): Buffer[] {
  const exts = goodExtensions();
  if (replacement) exts[index] = replacement;
  else exts.splice(index, 1);
  return exts;
}

function rejection(der: Uint8Array, exp = expected()): Error {
  try {
    checkMintedSvid(der, exp);
  } catch (e) {
    expect(isCaError(e, 'INTERNAL')).toBe(true);
    return e as Error;
  }
  throw new Error('checkMintedSvid accepted it');
}

describe('checkMintedSvid', () => {
  test('accepts what issueX509Svid mints and what the forging helper builds by default', async () => {
    const leaf = await issueX509Svid({
      spiffeId: ID,
      dnsNames: DNS,
      subjectPublicKey: generateKeyPairSync('ed25519').publicKey,
      issuer: { certDer: intermediate.der, signer, notAfter: intermediate.notAfter, skiHex: intermediate.skiHex },
      ttlSeconds: 3600,
      now: new Date('2031-03-01T10:00:30Z'),
    });
    const parsed = checkMintedSvid(leaf.der, { spiffeId: ID, dnsNames: DNS, notAfter: leaf.notAfter, notBefore: NOT_BEFORE, issuerSkiHex: intermediate.skiHex });
    expect(parsed.serialHex).toBe(leaf.serialHex);
    expect(checkMintedSvid(await forge(), expected()).subjectAltName?.uris).toEqual([ID]);
  });

  test.each<[string, () => Buffer[], RegExp]>([
    ['two URI SANs', () => with_(5, subjectAltNameExtension({ uris: [ID, 'spiffe://example.org/other'], dnsNames: DNS }, true)), /has 2 URI SANs/],
    ['another SPIFFE ID', () => with_(5, subjectAltNameExtension({ uris: ['spiffe://example.org/apx'], dnsNames: DNS }, true)), /URI SAN differs/],
    ['a missing DNS SAN', () => with_(5, subjectAltNameExtension({ uris: [ID], dnsNames: [] }, true)), /DNS SANs differ/],
    ['an extra DNS SAN', () => with_(5, subjectAltNameExtension({ uris: [ID], dnsNames: [...DNS, 'evil.example.com'] }, true)), /DNS SANs differ/],
    ['an email SAN', () => with_(5, extension(OID.subjectAltName, true, sequence(tlv(contextTag(6, false), Buffer.from(ID)), tlv(contextTag(2, false), Buffer.from(DNS[0]!)), tlv(contextTag(1, false), Buffer.from('a@b.c'))))), /SANs other than URI and DNS/],
    ['a non-critical SAN with an empty subject', () => with_(5, subjectAltNameExtension({ uris: [ID], dnsNames: DNS }, false)), /empty subject and a non-critical SAN/],
    ['no SAN', () => with_(5, null), /no subjectAltName/],
    ['CA:TRUE', () => with_(0, basicConstraintsExtension(true)), /is a CA certificate/],
    ['non-critical basicConstraints', () => with_(0, extension(OID.basicConstraints, false, sequence())), /basicConstraints is not critical/],
    ['no basicConstraints', () => with_(0, null), /no basicConstraints/],
    ['non-critical keyUsage', () => with_(1, extension(OID.keyUsage, false, Buffer.from([0x03, 0x02, 0x07, 0x80]))), /keyUsage is not critical/],
    ['keyUsage without digitalSignature', () => with_(1, keyUsageExtension(KEY_USAGE.keyAgreement)), /lacks digitalSignature/],
    ['keyUsage keyCertSign', () => with_(1, keyUsageExtension(KEY_USAGE.digitalSignature | KEY_USAGE.keyCertSign)), /keyCertSign or cRLSign/],
    ['keyUsage cRLSign', () => with_(1, keyUsageExtension(KEY_USAGE.digitalSignature | KEY_USAGE.cRLSign)), /keyCertSign or cRLSign/],
    ['no keyUsage', () => with_(1, null), /no keyUsage/],
    ['extKeyUsage serverAuth only', () => with_(2, extKeyUsageExtension([OID.serverAuth])), /extKeyUsage lacks/],
    ['no extKeyUsage', () => with_(2, null), /extKeyUsage lacks/],
    ['a wrong SKI', () => with_(3, subjectKeyIdentifierExtension(Buffer.alloc(20, 7))), /SKI is not the SHA-1/],
    ["an AKI that is not the issuer's SKI", () => with_(4, authorityKeyIdentifierExtension(Buffer.alloc(20, 9))), /AKI is not the issuer's SKI/],
    ['an unknown critical extension', () => [...goodExtensions(), extension('1.3.6.1.4.1.99999.1', true, sequence())], /unexpected critical extension 1\.3\.6\.1\.4\.1\.99999\.1/],
    ['a duplicated extension', () => [...goodExtensions(), extKeyUsageExtension([OID.serverAuth, OID.clientAuth])], /does not parse: duplicate extension 2\.5\.29\.37/],
  ])('refuses a leaf with %s', async (_what, extensions, message) => {
    expect(rejection(await forge({ extensions: extensions() })).message).toMatch(message);
  });

  test('refuses a validity or key other than the expected one', async () => {
    const der = await forge();
    expect(rejection(der, { ...expected(), notAfter: new Date(NOT_AFTER.getTime() + 1000) }).message).toMatch(/notAfter differs/);
    expect(rejection(der, { ...expected(), notBefore: new Date(NOT_BEFORE.getTime() - 1000) }).message).toMatch(/notBefore differs/);
    const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    expect(rejection(der, { ...expected(), subjectSpkiDer: otherKey }).message).toMatch(/another public key/);
    // Milliseconds are not part of a certificate: a caller's unrounded date still matches.
    expect(() => checkMintedSvid(der, { ...expected(), notAfter: new Date(NOT_AFTER.getTime() + 999) })).not.toThrow();
  });

  test('accepts a non-critical SAN when the subject is not empty', async () => {
    const der = await forge({ subject: encodeName([['O', 'Brevis']]), extensions: with_(5, subjectAltNameExtension({ uris: [ID], dnsNames: DNS }, false)) });
    expect(() => checkMintedSvid(der, expected())).not.toThrow();
  });

  test('refuses bytes that are not a certificate', async () => {
    const der = await forge();
    expect(rejection(der.subarray(0, der.length - 1)).message).toMatch(/does not parse/);
    expect(rejection(Buffer.concat([der, Buffer.from([0])])).message).toMatch(/does not parse: trailing data/);
    expect(rejection(Buffer.from('hello')).message).toMatch(/does not parse/);
  });
});
