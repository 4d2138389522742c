import 'reflect-metadata';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { webcrypto } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { MintX509SVIDResult } from '../proto/gen/brevis/ca/v1/node.js';
import type { Entry } from '../proto/gen/brevis/ca/v1/types.js';
import { checkMinted, fastFacts } from '../agent/sync/check-minted.js';
import { uriSansOf } from '../agent/node/server-identity.js';
import { newKeyWithCsr, type NewKey } from '../agent/svid/new-key.js';
import { parseCsr } from '../ca/x509/csr.js';

const ID = 'spiffe://example.org/svc/a';
const entry = { id: 'e1', spiffeId: ID } as Entry;
const EC = { name: 'ECDSA', namedCurve: 'P-256' };
const subtle = globalThis.crypto.subtle;

/** What the agent checked before the fast path (X509Certificate + checkPrivateKey on the imported PKCS#8). */
function reference(r: MintX509SVIDResult, e: Entry, pkcs8: Buffer) {
  if (!r.svid || r.statusCode !== 0) return r.statusMessage || `refused with status ${r.statusCode}`;
  if (r.svid.certChain.length === 0) return 'the CA returned an empty chain';
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(r.svid.certChain[0]!);
  } catch {
    return 'the CA returned a certificate that cannot be parsed';
  }
  const uris = uriSansOf(leaf.subjectAltName);
  if (uris.length !== 1 || uris[0] !== e.spiffeId) return `the certificate is not for ${e.spiffeId}`;
  if (!leaf.checkPrivateKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }))) return 'the certificate does not carry the key we generated';
  return {
    spiffeId: e.spiffeId,
    chain: r.svid.certChain.map((c) => Buffer.from(c)),
    key: pkcs8,
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
  };
}

let tmp: string;
let caKeys: webcrypto.CryptoKeyPair;
let caCert: x509.X509Certificate;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'brevis-mint-path-'));
  caKeys = (await subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  caCert = await x509.X509CertificateGenerator.createSelfSigned(
    { serialNumber: '01', name: 'CN=test ca', keys: caKeys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' }, extensions: [new x509.BasicConstraintsExtension(true, undefined, true)] },
    globalThis.crypto,
  );
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function leaf(key: NewKey, o: { serial?: string; sans?: x509.JsonGeneralName[]; spki?: Buffer } = {}): Promise<Buffer> {
  const publicKey = await subtle.importKey('spki', o.spki ?? key.spki, EC, true, ['verify']);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: o.serial ?? '7a0102030405060708090a0b0c0d0e0f',
      issuer: caCert.subject,
      subject: '',
      notBefore: new Date('2026-01-01T00:00:00Z'),
      notAfter: new Date('2026-01-01T01:00:00Z'),
      signingKey: caKeys.privateKey,
      publicKey,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: o.sans === undefined ? [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }], true)] : o.sans.length ? [new x509.SubjectAlternativeNameExtension(o.sans, true)] : [],
    },
    globalThis.crypto,
  );
  return Buffer.from(cert.rawData);
}

/** The certificate with its serial 00ff0102...08 rewritten in place to the negative ff0102...09 (the signature no longer matters here). */
function negativeSerial(der: Buffer): Buffer {
  const from = Buffer.from('020a00ff0102030405060708', 'hex');
  const at = der.indexOf(from);
  expect(at).toBeGreaterThan(0);
  const out = Buffer.from(der);
  Buffer.from('020aff010203040506070809', 'hex').copy(out, at);
  return out;
}

const ok = (der: Buffer): MintX509SVIDResult => ({ svid: { spiffeId: ID, certChain: [der, Buffer.from(caCert.rawData)] }, statusCode: 0, statusMessage: '' }) as unknown as MintX509SVIDResult;

describe('newKeyWithCsr', () => {
  test('returns a PKCS#8 key, its SPKI and a CSR that openssl and the CA verify, all for the same key', async () => {
    const key = await newKeyWithCsr();
    const imported = createPrivateKey({ key: key.pkcs8, format: 'der', type: 'pkcs8' });
    expect(imported.export({ format: 'jwk' })).toEqual(key.privateKey.export({ format: 'jwk' }));
    expect(parseCsr(key.csr).spkiDer.equals(key.spki)).toBe(true);
    const path = join(tmp, 'csr.der');
    writeFileSync(path, key.csr);
    const r = spawnSync('openssl', ['req', '-inform', 'DER', '-in', path, '-noout', '-verify'], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toMatch(/verify OK/);
  });

  test('makes a different key each time', async () => {
    const [a, b] = await Promise.all([newKeyWithCsr(), newKeyWithCsr()]);
    expect(a.spki.equals(b.spki)).toBe(false);
  });
});

describe('checkMinted decides as X509Certificate and checkPrivateKey did', () => {
  test.each([
    ['an SVID for the entry with our key', async (k: NewKey) => ok(await leaf(k))],
    ['a serial whose top bit is set (sign padding)', async (k: NewKey) => ok(await leaf(k, { serial: '00ff0102030405060708090a0b0c0d0e' }))],
    ['a serial with a leading zero nibble', async (k: NewKey) => ok(await leaf(k, { serial: '0102030405060708' }))],
    ['a negative serial', async (k: NewKey) => ok(negativeSerial(await leaf(k, { serial: '00ff0102030405060708' })))],
    ['a URI SAN and DNS SANs', async (k: NewKey) => ok(await leaf(k, { sans: [{ type: 'url', value: ID }, { type: 'dns', value: 'a.example.org' }] }))],
    ['another SPIFFE ID', async (k: NewKey) => ok(await leaf(k, { sans: [{ type: 'url', value: 'spiffe://example.org/svc/b' }] }))],
    ['two URI SANs', async (k: NewKey) => ok(await leaf(k, { sans: [{ type: 'url', value: ID }, { type: 'url', value: ID }] }))],
    ['no SAN', async (k: NewKey) => ok(await leaf(k, { sans: [] }))],
    ['another key', async (k: NewKey) => ok(await leaf(k, { spki: (await newKeyWithCsr()).spki }))],
    ['bytes that are no certificate', async () => ok(Buffer.from('not a certificate'))],
    ['a truncated certificate', async (k: NewKey) => ok((await leaf(k)).subarray(0, 100))],
    ['an empty chain', async () => ({ svid: { spiffeId: ID, certChain: [] }, statusCode: 0, statusMessage: '' }) as unknown as MintX509SVIDResult],
    ['a refusal', async () => ({ statusCode: 7, statusMessage: 'entry unknown' }) as unknown as MintX509SVIDResult],
  ])('%s', async (_name, make) => {
    const key = await newKeyWithCsr();
    const r = await make(key);
    expect(checkMinted(r, entry, key)).toEqual(reference(r, entry, key.pkcs8));
  });

  test('accepts the SVID for the entry with our key, with X509Certificate’s serial and validity', async () => {
    const key = await newKeyWithCsr();
    const der = await leaf(key, { serial: '00ff0102030405060708090a0b0c0d0e' });
    const got = checkMinted(ok(der), entry, key);
    expect(typeof got).toBe('object');
    expect(got).toMatchObject({ spiffeId: ID, serial: 'ff0102030405060708090a0b0c0d0e', notAfter: new Date('2026-01-01T01:00:00Z') });
  });

  test('reads an ordinary SVID with the strict reader, and leaves what it cannot decide to X509Certificate', async () => {
    const key = await newKeyWithCsr();
    expect(fastFacts(await leaf(key), key.spki)).toMatchObject({ uris: [ID], serial: '7a0102030405060708090a0b0c0d0e0f', ownKey: true });
    expect(fastFacts(negativeSerial(await leaf(key, { serial: '00ff0102030405060708' })), key.spki)).toBeUndefined();
    expect(fastFacts(await leaf(key, { spki: (await newKeyWithCsr()).spki }), key.spki)).toBeUndefined();
    expect(fastFacts(Buffer.from('junk'), key.spki)).toBeUndefined();
  });
});
