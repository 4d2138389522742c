import * as x509 from '@peculiar/x509';
import { X509Certificate } from 'node:crypto';
import type { webcrypto } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  X509Bundle,
  bundleFromDer,
  bundleFromPem,
  bundleToDer,
  bundleToPem,
  fromSpiffeJwks,
  toSpiffeJwks,
} from '../spiffe/bundle.js';
import type { SpiffeJwk } from '../spiffe/bundle.js';
import { SpiffeError } from '../spiffe/errors.js';
import { pemEncode } from '../spiffe/pem.js';

x509.cryptoProvider.set(globalThis.crypto);

type KeyAlg = 'P-256' | 'P-384' | 'Ed25519' | 'RSA';

interface Ca {
  der: Buffer;
  /** The public key as exported by WebCrypto from the key pair itself, not from the certificate. */
  jwk: webcrypto.JsonWebKey;
}

const ALGS: Record<KeyAlg, { gen: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams | webcrypto.Algorithm; sign: webcrypto.Algorithm | webcrypto.EcdsaParams }> = {
  'P-256': { gen: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams },
  'P-384': { gen: { name: 'ECDSA', namedCurve: 'P-384' }, sign: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams },
  Ed25519: { gen: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
  RSA: {
    gen: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    sign: { name: 'RSASSA-PKCS1-v1_5' },
  },
};

async function makeCa(alg: KeyAlg, name: string): Promise<Ca> {
  const keys = (await crypto.subtle.generateKey(ALGS[alg].gen, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys,
    notBefore: new Date('2025-01-01T00:00:00Z'),
    notAfter: new Date('2035-01-01T00:00:00Z'),
    signingAlgorithm: ALGS[alg].sign,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://example.org' }]),
    ],
  });
  return { der: Buffer.from(cert.rawData), jwk: await crypto.subtle.exportKey('jwk', keys.publicKey) };
}

function rejection(fn: () => unknown): SpiffeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SpiffeError);
    return e as SpiffeError;
  }
  throw new Error('expected a SpiffeError, nothing was thrown');
}

function expectBundleInvalid(fn: () => unknown, rule: RegExp): void {
  const e = rejection(fn);
  expect(e.code).toBe('BUNDLE_INVALID');
  expect(e.message).toMatch(rule);
}

const cas = {} as Record<KeyAlg, Ca>;

beforeAll(async () => {
  for (const alg of Object.keys(ALGS) as KeyAlg[]) cas[alg] = await makeCa(alg, `ca ${alg}`);
});

function bundleOf(...algs: KeyAlg[]): X509Bundle {
  return new X509Bundle({
    trustDomain: 'example.org',
    authorities: algs.map((a) => cas[a].der),
    sequence: 7,
    refreshHintSeconds: 300,
  });
}

describe('X509Bundle', () => {
  it('keeps its trust domain, authorities in order, sequence and refresh hint', () => {
    const b = bundleOf('P-256', 'RSA');
    expect(b.trustDomain).toBe('example.org');
    expect(b.authorities.map((a) => a.toString('hex'))).toEqual([cas['P-256'].der.toString('hex'), cas.RSA.der.toString('hex')]);
    expect(b.certificates.map((c) => c.subject)).toEqual(['CN=ca P-256', 'CN=ca RSA']);
    expect(b.sequence).toBe(7);
    expect(b.refreshHintSeconds).toBe(300);
    expect(b.hasAuthority(cas.RSA.der)).toBe(true);
    expect(b.hasAuthority(cas['P-384'].der)).toBe(false);
  });

  it('defaults the sequence to 0 and leaves the refresh hint unknown', () => {
    const b = new X509Bundle({ trustDomain: 'spiffe://example.org', authorities: [] });
    expect(b.trustDomain).toBe('example.org');
    expect(b.sequence).toBe(0);
    expect(b.refreshHintSeconds).toBeUndefined();
  });

  it('drops an identical duplicate authority', () => {
    const b = new X509Bundle({ trustDomain: 'example.org', authorities: [cas.RSA.der, cas['P-256'].der, cas.RSA.der] });
    expect(b.authorities).toHaveLength(2);
  });

  it('is not changed by later writes to the buffers it was built from', () => {
    const der = Buffer.from(cas['P-256'].der);
    const b = new X509Bundle({ trustDomain: 'example.org', authorities: [der] });
    der.fill(0);
    expect(b.authorities[0]!.equals(cas['P-256'].der)).toBe(true);
  });

  it('compares equal only with the same domain, sequence, hint and authorities', () => {
    const b = bundleOf('P-256', 'RSA');
    expect(b.equals(bundleOf('P-256', 'RSA'))).toBe(true);
    expect(b.equals(bundleOf('RSA', 'P-256'))).toBe(false);
    expect(b.equals(bundleOf('P-256'))).toBe(false);
    const other = (patch: object) =>
      new X509Bundle({ trustDomain: 'example.org', authorities: b.authorities, sequence: 7, refreshHintSeconds: 300, ...patch });
    expect(b.equals(other({}))).toBe(true);
    expect(b.equals(other({ sequence: 8 }))).toBe(false);
    expect(b.equals(other({ refreshHintSeconds: 60 }))).toBe(false);
    expect(b.equals(other({ trustDomain: 'example.com' }))).toBe(false);
  });

  it('refuses an invalid trust domain, sequence, refresh hint or certificate', () => {
    expect(rejection(() => new X509Bundle({ trustDomain: 'Example.org', authorities: [] })).code).toBe('INVALID_TRUST_DOMAIN');
    expectBundleInvalid(() => new X509Bundle({ trustDomain: 'example.org', authorities: [], sequence: -1 }), /sequence/);
    expectBundleInvalid(() => new X509Bundle({ trustDomain: 'example.org', authorities: [], sequence: 1.5 }), /sequence/);
    expectBundleInvalid(
      () => new X509Bundle({ trustDomain: 'example.org', authorities: [], refreshHintSeconds: -5 }),
      /refresh hint/,
    );
    expectBundleInvalid(
      () => new X509Bundle({ trustDomain: 'example.org', authorities: [Buffer.from([0x30, 0x03, 1, 2, 3])] }),
      /authority 0 is not a DER X.509 certificate/,
    );
    const trailing = Buffer.concat([cas['P-256'].der, Buffer.from([0x30, 0x00])]);
    expectBundleInvalid(() => new X509Bundle({ trustDomain: 'example.org', authorities: [trailing] }), /trailing bytes/);
  });
});

describe('toSpiffeJwks', () => {
  it('writes the SPIFFE bundle format: keys, spiffe_sequence and spiffe_refresh_hint', () => {
    const doc = toSpiffeJwks(bundleOf('P-256'));
    expect(Object.keys(doc).sort()).toEqual(['keys', 'spiffe_refresh_hint', 'spiffe_sequence']);
    expect(doc.spiffe_sequence).toBe(7);
    expect(doc.spiffe_refresh_hint).toBe(300);
    expect(doc.keys).toHaveLength(1);
  });

  it('leaves spiffe_refresh_hint out when unknown and writes an empty keys list for no authority', () => {
    const doc = toSpiffeJwks(new X509Bundle({ trustDomain: 'example.org', authorities: [] }));
    expect(doc).toEqual({ keys: [], spiffe_sequence: 0 });
  });

  const expectedParams: Record<KeyAlg, string[]> = {
    'P-256': ['crv', 'kty', 'use', 'x', 'x5c', 'y'],
    'P-384': ['crv', 'kty', 'use', 'x', 'x5c', 'y'],
    Ed25519: ['crv', 'kty', 'use', 'x', 'x5c'],
    RSA: ['e', 'kty', 'n', 'use', 'x5c'],
  };

  for (const alg of Object.keys(ALGS) as KeyAlg[]) {
    it(`describes a ${alg} authority with use x509-svid, its key's parameters and exactly its DER in x5c`, () => {
      const [jwk] = toSpiffeJwks(bundleOf(alg)).keys as [SpiffeJwk];
      const key = cas[alg].jwk;
      expect(Object.keys(jwk).sort()).toEqual(expectedParams[alg]);
      expect(jwk.use).toBe('x509-svid');
      expect(jwk.kty).toBe(key.kty);
      for (const p of ['crv', 'x', 'y', 'n', 'e'] as const) expect(jwk[p]).toBe(key[p]);
      expect(jwk.x5c).toEqual([cas[alg].der.toString('base64')]);
      expect(jwk).not.toHaveProperty('kid');
    });
  }

  it('names the Ed25519 key as kty OKP, crv Ed25519', () => {
    const [jwk] = toSpiffeJwks(bundleOf('Ed25519')).keys as [SpiffeJwk];
    expect(jwk.kty).toBe('OKP');
    expect(jwk.crv).toBe('Ed25519');
  });

  it('writes x5c in standard base64 that decodes to a certificate', () => {
    const [jwk] = toSpiffeJwks(bundleOf('RSA')).keys as [SpiffeJwk];
    const b64 = jwk.x5c![0]!;
    expect(b64).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(new X509Certificate(Buffer.from(b64, 'base64')).subject).toBe('CN=ca RSA');
  });
});

describe('fromSpiffeJwks', () => {
  it('round-trips every key type through JSON text', () => {
    const b = bundleOf('P-256', 'P-384', 'Ed25519', 'RSA');
    const text = JSON.stringify(toSpiffeJwks(b));
    const back = fromSpiffeJwks(text, 'example.org');
    expect(back.equals(b)).toBe(true);
    expect(fromSpiffeJwks(Buffer.from(text), 'example.org').equals(b)).toBe(true);
    expect(fromSpiffeJwks(JSON.parse(text) as object, 'example.org').equals(b)).toBe(true);
  });

  it('reads the example shape of the standard with keys in another order', () => {
    const doc = {
      spiffe_sequence: 1,
      spiffe_refresh_hint: 2419200,
      keys: [{ kty: 'RSA', use: 'x509-svid', x5c: [cas.RSA.der.toString('base64')], n: cas.RSA.jwk.n, e: 'AQAB' }],
    };
    const b = fromSpiffeJwks(JSON.stringify(doc), 'example.com');
    expect(b.trustDomain).toBe('example.com');
    expect(b.sequence).toBe(1);
    expect(b.refreshHintSeconds).toBe(2419200);
    expect(b.authorities[0]!.equals(cas.RSA.der)).toBe(true);
  });

  it('tolerates and ignores jwt-svid keys and keys of another use', () => {
    const doc = toSpiffeJwks(bundleOf('P-256'));
    doc.keys.push(
      { kty: 'EC', use: 'jwt-svid', kid: 'k1', crv: 'P-256', x: cas['P-256'].jwk.x, y: cas['P-256'].jwk.y },
      { kty: 'EC', use: 'wit-svid', kid: 'k2', crv: 'P-256', x: cas['P-256'].jwk.x, y: cas['P-256'].jwk.y },
      { kty: 'EC', crv: 'P-256', x: cas['P-256'].jwk.x, y: cas['P-256'].jwk.y },
    );
    const b = fromSpiffeJwks(doc, 'example.org');
    expect(b.authorities).toHaveLength(1);
  });

  it('accepts a bundle with no keys and no sequence', () => {
    const b = fromSpiffeJwks('{"keys":[]}', 'example.org');
    expect(b.authorities).toHaveLength(0);
    expect(b.sequence).toBe(0);
  });

  const good = (): { keys: SpiffeJwk[]; [k: string]: unknown } =>
    toSpiffeJwks(bundleOf('P-256')) as unknown as { keys: SpiffeJwk[] };

  it('refuses text that is not JSON or not a bundle object', () => {
    expectBundleInvalid(() => fromSpiffeJwks('{"keys":', 'example.org'), /not valid JSON/);
    expectBundleInvalid(() => fromSpiffeJwks('[]', 'example.org'), /JSON object/);
    expectBundleInvalid(() => fromSpiffeJwks('{}', 'example.org'), /'keys' array/);
    expectBundleInvalid(() => fromSpiffeJwks('{"keys":{}}', 'example.org'), /'keys' array/);
    expectBundleInvalid(() => fromSpiffeJwks('{"keys":[42]}', 'example.org'), /key 0 is not a JSON object/);
    expectBundleInvalid(() => fromSpiffeJwks('{"keys":[{"use":"x509-svid"}]}', 'example.org'), /no 'kty'/);
  });

  it('refuses a negative, fractional or non-numeric sequence or refresh hint', () => {
    for (const v of [-1, 1.5, '3', null]) {
      expectBundleInvalid(() => fromSpiffeJwks({ ...good(), spiffe_sequence: v }, 'example.org'), /spiffe_sequence/);
      expectBundleInvalid(() => fromSpiffeJwks({ ...good(), spiffe_refresh_hint: v }, 'example.org'), /spiffe_refresh_hint/);
    }
  });

  it('refuses an x509-svid key without exactly one certificate in x5c', () => {
    const der64 = cas['P-256'].der.toString('base64');
    for (const x5c of [undefined, [], [der64, cas.RSA.der.toString('base64')], [42]]) {
      const doc = good();
      if (x5c === undefined) delete doc.keys[0]!.x5c;
      else doc.keys[0]!.x5c = x5c as string[];
      expectBundleInvalid(() => fromSpiffeJwks(doc, 'example.org'), /exactly one certificate in 'x5c'/);
    }
  });

  it('refuses url-safe or unpadded base64 in x5c', () => {
    const std = cas['P-256'].der.toString('base64');
    const doc = good();
    doc.keys[0]!.x5c = [cas['P-256'].der.toString('base64url')];
    expect(doc.keys[0]!.x5c[0]).not.toBe(std);
    expectBundleInvalid(() => fromSpiffeJwks(doc, 'example.org'), /standard .*base64/);
  });

  it('refuses an x5c entry that is not a certificate', () => {
    const doc = good();
    doc.keys[0]!.x5c = [Buffer.from([0x30, 0x03, 2, 1, 0]).toString('base64')];
    expectBundleInvalid(() => fromSpiffeJwks(doc, 'example.org'), /not a DER X.509 certificate/);
  });

  it("refuses key parameters that do not match the certificate's key", () => {
    const wrongX = good();
    wrongX.keys[0]!.x = cas['P-384'].jwk.x;
    expectBundleInvalid(() => fromSpiffeJwks(wrongX, 'example.org'), /parameter 'x' does not match/);
    const wrongKty = good();
    wrongKty.keys[0]!.kty = 'RSA';
    expectBundleInvalid(() => fromSpiffeJwks(wrongKty, 'example.org'), /parameter 'kty' does not match/);
    const missingY = good();
    delete missingY.keys[0]!.y;
    expectBundleInvalid(() => fromSpiffeJwks(missingY, 'example.org'), /parameter 'y' does not match/);
  });

  it('refuses a key that carries private key parameters, without echoing them', () => {
    const doc = good();
    doc.keys[0]!.d = 'c2VjcmV0LXByaXZhdGUtc2NhbGFy';
    const e = rejection(() => fromSpiffeJwks(doc, 'example.org'));
    expect(e.code).toBe('BUNDLE_INVALID');
    expect(e.message).toMatch(/private key parameter 'd'/);
    expect(e.message).not.toContain('c2VjcmV0');
  });
});

describe('PEM and DER forms', () => {
  it('round-trips through PEM', () => {
    const b = bundleOf('P-256', 'Ed25519');
    const pem = bundleToPem(b);
    expect(pem.match(/-----BEGIN CERTIFICATE-----/g)).toHaveLength(2);
    const back = bundleFromPem('example.org', pem, { sequence: 7, refreshHintSeconds: 300 });
    expect(back.equals(b)).toBe(true);
  });

  it('refuses PEM with no certificate or with a block that is not a certificate', () => {
    expectBundleInvalid(() => bundleFromPem('example.org', ''), /holds no certificate/);
    const withKey = pemEncode('CERTIFICATE', cas.RSA.der) + pemEncode('PRIVATE KEY', Buffer.from([0x30, 0]));
    expectBundleInvalid(() => bundleFromPem('example.org', withKey), /unexpected PEM block 'PRIVATE KEY'/);
  });

  it('round-trips through concatenated DER', () => {
    const b = bundleOf('RSA', 'P-384');
    const der = bundleToDer(b);
    expect(der.length).toBe(cas.RSA.der.length + cas['P-384'].der.length);
    const back = bundleFromDer('example.org', der);
    expect(back.authorities.map((a) => a.toString('hex'))).toEqual(b.authorities.map((a) => a.toString('hex')));
  });

  it('refuses truncated concatenated DER', () => {
    const der = bundleToDer(bundleOf('RSA'));
    expectBundleInvalid(() => bundleFromDer('example.org', der.subarray(0, der.length - 3)), /truncated/);
  });
});
