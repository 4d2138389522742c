import 'reflect-metadata';
import type { webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AuthorityKeyIdentifier, Certificate, id_ce_authorityKeyIdentifier } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, test } from 'vitest';
import { chainAuthorityIds, countHoldings } from '../agent/push/chain-ids.js';

const EC = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN = { name: 'ECDSA', hash: 'SHA-256' };

/** The AKI reader chainAuthorityIds used before (the ASN.1 library only). */
function referenceAki(der: Uint8Array): string | undefined {
  try {
    const cert = AsnConvert.parse(der, Certificate);
    const ext = cert.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_authorityKeyIdentifier);
    if (!ext) return undefined;
    const aki = AsnConvert.parse(ext.extnValue.buffer, AuthorityKeyIdentifier);
    return aki.keyIdentifier ? Buffer.from(aki.keyIdentifier.buffer).toString('hex') : undefined;
  } catch {
    return undefined;
  }
}

const reference = (chain: Uint8Array[]) => [...new Set(chain.map(referenceAki).filter((x): x is string => x !== undefined))];

let keys: webcrypto.CryptoKeyPair;
const certs: Record<string, Buffer> = {};
beforeAll(async () => {
  keys = (await globalThis.crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const make = async (name: string, extensions: x509.Extension[]) => {
    const c = await x509.X509CertificateGenerator.create(
      { serialNumber: '01', issuer: 'CN=ca', subject: `CN=${name}`, notBefore: new Date('2026-01-01Z'), notAfter: new Date('2027-01-01Z'), signingKey: keys.privateKey, publicKey: keys.publicKey, signingAlgorithm: SIGN, extensions },
      globalThis.crypto,
    );
    certs[name] = Buffer.from(c.rawData);
  };
  await make('aki', [new x509.AuthorityKeyIdentifierExtension('0102030405060708090a0b0c0d0e0f1011121314')]);
  await make('aki2', [new x509.AuthorityKeyIdentifierExtension('aabbccdd')]);
  await make('none', []);
  // AuthorityKeyIdentifier { [1] { dNSName ca.example }, [2] 05 }: no keyIdentifier.
  const issuerSerial = Buffer.concat([Buffer.from('3011a10c820a', 'hex'), Buffer.from('ca.example'), Buffer.from('820105', 'hex')]);
  await make('issuer-serial', [new x509.Extension('2.5.29.35', false, issuerSerial)]);
});

describe('chainAuthorityIds with the strict DER reader', () => {
  test.each([
    ['a leaf and its intermediate', ['aki', 'aki2']],
    ['the same AKI twice', ['aki', 'aki']],
    ['a certificate without AKI', ['none', 'aki']],
    ['an AKI with issuer and serial only', ['issuer-serial']],
  ])('finds the same ids as the ASN.1 library for %s', (_name, names) => {
    const chain = names.map((n) => Buffer.from(certs[n]!));
    const ids = chainAuthorityIds(chain);
    expect(ids).toEqual(reference(chain));
    expect(chainAuthorityIds(chain)).toBe(ids); // the same chain again: remembered
  });

  test('finds the AKI of a leaf the reader expects', () => {
    expect(chainAuthorityIds([Buffer.from(certs.aki!)])).toEqual(['0102030405060708090a0b0c0d0e0f1011121314']);
  });

  test('ignores bytes that are no certificate, as before', () => {
    const chain = [Buffer.from('junk'), Buffer.from(certs.aki2!)];
    expect(chainAuthorityIds(chain)).toEqual(reference(chain));
    expect(chainAuthorityIds(chain)).toEqual(['aabbccdd']);
  });

  test('counts the chains held per authority id', () => {
    const chains = Array.from({ length: 10 }, (_, i) => [Buffer.from(certs[i % 2 ? 'aki' : 'aki2']!), Buffer.from(certs.none!)]);
    expect(countHoldings(chains)).toEqual(new Map([['aabbccdd', 5], ['0102030405060708090a0b0c0d0e0f1011121314', 5]]));
  });
});
