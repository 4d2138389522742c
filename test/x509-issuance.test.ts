import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isCaError } from '../ca/errors.js';
import type { KeyType } from '../ca/keys/keytype.js';
import { generateSigner } from '../ca/keys/signer.js';
import type { LocalSigner } from '../ca/keys/signer.js';
import { createIntermediateCertificate, createRootCertificate } from '../ca/x509/hierarchy.js';
import type { CaCertificate } from '../ca/x509/hierarchy.js';
import { issueX509Svid } from '../ca/x509/leaf.js';
import type { X509SvidIssuer } from '../ca/x509/leaf.js';
import { parseCertificate } from '../ca/x509/parse.js';
import { checkMintedSvid } from '../ca/x509/validate.js';

const TD = 'example.org';
const HOUR = 3600_000;
let tmp: string;
let fileCount = 0;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'brevis-x509-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function pem(der: Uint8Array): string {
  const lines = Buffer.from(der).toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

function writePem(der: Uint8Array): string {
  const path = join(tmp, `cert-${fileCount++}.pem`);
  writeFileSync(path, pem(der));
  return path;
}

/** Runs openssl; returns its exit status and combined output instead of throwing. */
function openssl(args: string[]): { ok: boolean; output: string } {
  try {
    const out = execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    return { ok: true, output: out.toString() };
  } catch (e) {
    const err = e as { stdout?: Buffer; stderr?: Buffer };
    return { ok: false, output: `${err.stdout?.toString() ?? ''}${err.stderr?.toString() ?? ''}` };
  }
}

function opensslText(der: Uint8Array): string {
  const r = openssl(['x509', '-in', writePem(der), '-noout', '-text']);
  expect(r.ok, r.output).toBe(true);
  return r.output;
}

function opensslVerify(chain: { root: Uint8Array; intermediate: Uint8Array; leaf: Uint8Array }, purpose: string) {
  return openssl([
    'verify',
    '-x509_strict',
    '-purpose',
    purpose,
    '-CAfile',
    writePem(chain.root),
    '-untrusted',
    writePem(chain.intermediate),
    writePem(chain.leaf),
  ]);
}

interface Pki {
  root: CaCertificate;
  rootSigner: LocalSigner;
  intermediate: CaCertificate;
  intermediateSigner: LocalSigner;
  issuer: X509SvidIssuer;
}

async function makePki(rootType: KeyType, intermediateType: KeyType, now = new Date()): Promise<Pki> {
  const rootSigner = await generateSigner(rootType);
  const intermediateSigner = await generateSigner(intermediateType);
  const root = await createRootCertificate({
    trustDomain: TD,
    signer: rootSigner,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 24 * HOUR),
  });
  const intermediate = await createIntermediateCertificate({
    trustDomain: TD,
    subjectSigner: intermediateSigner,
    issuerCertDer: root.der,
    issuerSigner: rootSigner,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 6 * HOUR),
  });
  const issuer = { certDer: intermediate.der, signer: intermediateSigner, notAfter: intermediate.notAfter, skiHex: intermediate.skiHex };
  return { root, rootSigner, intermediate, intermediateSigner, issuer };
}

const SUBJECT_KEYS: Record<string, () => KeyObject> = {
  'P-256': () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
  'P-384': () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
  Ed25519: () => generateKeyPairSync('ed25519').publicKey,
  'RSA 2048': () => generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
};

const CA_KEY_TYPES: KeyType[] = ['ec-p256', 'ec-p384', 'ed25519'];

describe.each(CA_KEY_TYPES)('a %s CA hierarchy', (caKeyType) => {
  let pki: Pki;
  beforeAll(async () => {
    pki = await makePki(caKeyType, caKeyType);
  });

  test('has a self-signed root that is a critical-CA with only certificate and CRL signing', () => {
    const text = opensslText(pki.root.der);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:TRUE\n/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/);
    expect(text).toContain('URI:spiffe://example.org\n');
    expect(text).toContain(`Subject: O = Brevis, CN = example.org Root CA ${pki.root.skiHex.slice(0, 8)}`);
    expect(text).toContain(`Issuer: O = Brevis, CN = example.org Root CA ${pki.root.skiHex.slice(0, 8)}`);
    expect(text).toContain(`X509v3 Subject Key Identifier: \n                ${colonHex(pki.root.skiHex)}`);
    const self = openssl(['verify', '-x509_strict', '-CAfile', writePem(pki.root.der), writePem(pki.root.der)]);
    expect(self.ok, self.output).toBe(true);
  });

  test('has an intermediate limited to path length 0 and to URIs in its own trust domain', () => {
    const text = opensslText(pki.intermediate.der);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:TRUE, pathlen:0\n/);
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/);
    expect(text).toMatch(/X509v3 Name Constraints: critical\n\s+Permitted:\n\s+URI:example.org\n/);
    expect(text).toContain('URI:spiffe://example.org\n');
    expect(text).toContain(`Issuer: O = Brevis, CN = example.org Root CA ${pki.root.skiHex.slice(0, 8)}`);
    expect(text).toContain(`X509v3 Authority Key Identifier: \n                ${colonHex(pki.root.skiHex)}`);
    expect(new X509Certificate(pki.intermediate.der).verify(pki.rootSigner.publicKeyObject)).toBe(true);
  });

  test.each(Object.keys(SUBJECT_KEYS))('issues a %s leaf that openssl accepts for TLS clients and servers', async (name) => {
    const subjectPublicKey = SUBJECT_KEYS[name]!();
    const now = new Date();
    const leaf = await issueX509Svid({
      spiffeId: 'spiffe://example.org/ns/prod/sa/web',
      dnsNames: ['web.example.org', 'web'],
      subjectPublicKey,
      issuer: pki.issuer,
      ttlSeconds: 3600,
      now,
    });
    const chain = { root: pki.root.der, intermediate: pki.intermediate.der, leaf: leaf.der };
    for (const purpose of ['sslclient', 'sslserver']) {
      const r = opensslVerify(chain, purpose);
      expect(r.ok, `${purpose}: ${r.output}`).toBe(true);
      expect(r.output).toMatch(/: OK\n$/);
    }

    const text = opensslText(leaf.der);
    expect(text).toMatch(/Subject: \n/);
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\n\s+URI:spiffe:\/\/example.org\/ns\/prod\/sa\/web, DNS:web.example.org, DNS:web\n/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE\n/);
    const usage = { 'P-256': 'Digital Signature, Key Agreement', 'P-384': 'Digital Signature, Key Agreement', Ed25519: 'Digital Signature', 'RSA 2048': 'Digital Signature, Key Encipherment' }[name];
    expect(text).toMatch(new RegExp(`X509v3 Key Usage: critical\\n\\s+${usage}\\n`));
    expect(text).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication, TLS Web Client Authentication\n/);
    expect(text).toContain(`X509v3 Authority Key Identifier: \n                ${colonHex(pki.intermediate.skiHex)}`);
    expect(text).toMatch(new RegExp(`Serial Number:\\n\\s+${colonHex(leaf.serialHex).toLowerCase()}\\n`));

    // Node's own X.509 code agrees on the signature and the issuer relation.
    const node = new X509Certificate(leaf.der);
    expect(node.verify(pki.intermediateSigner.publicKeyObject)).toBe(true);
    expect(node.checkIssued(new X509Certificate(pki.intermediate.der))).toBe(true);
    expect(node.ca).toBe(false);
    expect(node.publicKey.export({ type: 'spki', format: 'der' }).equals(subjectPublicKey.export({ type: 'spki', format: 'der' }))).toBe(true);

    checkMintedSvid(leaf.der, {
      spiffeId: 'spiffe://example.org/ns/prod/sa/web',
      dnsNames: ['web.example.org', 'web'],
      notAfter: leaf.notAfter,
      issuerSkiHex: pki.intermediate.skiHex,
    });
  });

  test('a leaf for another trust domain, forged under the intermediate, fails openssl with a name constraint violation', async () => {
    const forged = await issueX509Svid({
      spiffeId: 'spiffe://other.example/x',
      dnsNames: [],
      subjectPublicKey: SUBJECT_KEYS['P-256']!(),
      issuer: pki.issuer,
      ttlSeconds: 600,
      now: new Date(),
    });
    const r = opensslVerify({ root: pki.root.der, intermediate: pki.intermediate.der, leaf: forged.der }, 'sslclient');
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/error 47 at 0 depth lookup: permitted subtree violation/);
  });
});

describe('validity periods', () => {
  let pki: Pki;
  beforeAll(async () => {
    pki = await makePki('ec-p256', 'ec-p256');
  });

  test('notBefore is backdated and notAfter is now + TTL, both in whole seconds', async () => {
    const now = new Date('2030-05-01T12:00:00.750Z');
    const issuer = { ...pki.issuer, notAfter: new Date('2030-05-02T00:00:00Z') };
    const leaf = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey: SUBJECT_KEYS['P-256']!(), issuer, ttlSeconds: 3600, now });
    expect(leaf.notBefore.toISOString()).toBe('2030-05-01T11:59:30.000Z');
    expect(leaf.notAfter.toISOString()).toBe('2030-05-01T13:00:00.000Z');
    const text = opensslText(leaf.der);
    expect(text).toContain('Not Before: May  1 11:59:30 2030 GMT');
    expect(text).toContain('Not After : May  1 13:00:00 2030 GMT');

    const custom = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey: SUBJECT_KEYS['P-256']!(), issuer, ttlSeconds: 60, now, backdateSeconds: 5 });
    expect(custom.notBefore.toISOString()).toBe('2030-05-01T11:59:55.000Z');
    expect(custom.notAfter.toISOString()).toBe('2030-05-01T12:01:00.000Z');
  });

  test("a leaf's lifetime is capped at its issuer's notAfter", async () => {
    const now = new Date();
    const short = await createIntermediateCertificate({
      trustDomain: TD,
      subjectSigner: pki.intermediateSigner,
      issuerCertDer: pki.root.der,
      issuerSigner: pki.rootSigner,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 10 * 60_000),
    });
    const issuer = { certDer: short.der, signer: pki.intermediateSigner, notAfter: short.notAfter, skiHex: short.skiHex };
    const leaf = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey: SUBJECT_KEYS.Ed25519!(), issuer, ttlSeconds: 3600, now });
    expect(leaf.notAfter.getTime()).toBe(short.notAfter.getTime());
    expect(parseCertificate(leaf.der).notAfter.getTime()).toBe(short.notAfter.getTime());
    const r = opensslVerify({ root: pki.root.der, intermediate: short.der, leaf: leaf.der }, 'sslserver');
    expect(r.ok, r.output).toBe(true);
    // One second past the issuer's end, openssl refuses the chain.
    const after = openssl(['verify', '-attime', String(short.notAfter.getTime() / 1000 + 1), '-CAfile', writePem(pki.root.der), '-untrusted', writePem(short.der), writePem(leaf.der)]);
    expect(after.ok).toBe(false);
    expect(after.output).toMatch(/certificate has expired/);
  });

  test("an intermediate's lifetime is capped at its root's notAfter", async () => {
    const intermediate = await createIntermediateCertificate({
      trustDomain: TD,
      subjectSigner: pki.intermediateSigner,
      issuerCertDer: pki.root.der,
      issuerSigner: pki.rootSigner,
      notBefore: new Date(),
      notAfter: new Date(pki.root.notAfter.getTime() + 365 * 24 * HOUR),
    });
    expect(intermediate.notAfter.getTime()).toBe(pki.root.notAfter.getTime());
  });

  test('an expired issuer cannot issue', async () => {
    const issuer = { ...pki.issuer, notAfter: new Date('2030-01-01T00:00:00Z') };
    const err = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey: SUBJECT_KEYS['P-256']!(), issuer, ttlSeconds: 60, now: new Date('2030-01-01T00:00:00Z') }).catch((e) => e);
    expect(isCaError(err, 'FAILED_PRECONDITION')).toBe(true);
  });

  test('a TTL that is not a positive whole number of seconds is refused', async () => {
    for (const ttlSeconds of [0, -5, 1.5, Number.NaN]) {
      const err = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey: SUBJECT_KEYS['P-256']!(), issuer: pki.issuer, ttlSeconds, now: new Date() }).catch((e) => e);
      expect(isCaError(err, 'INVALID_ARGUMENT'), String(ttlSeconds)).toBe(true);
    }
  });
});

describe('identifiers', () => {
  let pki: Pki;
  beforeAll(async () => {
    pki = await makePki('ec-p256', 'ec-p256');
  });

  test('serials are 128-bit random positive integers, unique across leaves', async () => {
    const subjectPublicKey = SUBJECT_KEYS['P-256']!();
    const spki = subjectPublicKey.export({ type: 'spki', format: 'der' });
    const serials = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const leaf = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey, subjectSpkiDer: spki, issuer: pki.issuer, ttlSeconds: 60, now: new Date() });
      expect(leaf.serialHex).toMatch(/^([0-9a-f]{2})+$/);
      expect(parseInt(leaf.serialHex.slice(0, 2), 16)).toBeLessThan(0x80); // positive, no sign byte
      expect(leaf.serialHex.length).toBeLessThanOrEqual(32);
      expect(BigInt(`0x${leaf.serialHex}`)).toBeGreaterThan(0n);
      expect(parseCertificate(leaf.der).serialHex).toBe(leaf.serialHex);
      serials.add(leaf.serialHex);
    }
    expect(serials.size).toBe(200);
    // With 127 random bits, some serial has its top kept bit set: the encoding never needs a sign byte.
    expect([...serials].some((s) => s.length === 32 && parseInt(s[0]!, 16) >= 4)).toBe(true);
  });

  test("the leaf SKI is the SHA-1 of the subject key's bits (RFC 5280 method 1)", async () => {
    const subjectPublicKey = SUBJECT_KEYS['P-256']!();
    const leaf = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey, issuer: pki.issuer, ttlSeconds: 60, now: new Date() });
    // The uncompressed P-256 point is the last 65 bytes of its SPKI.
    const point = subjectPublicKey.export({ type: 'spki', format: 'der' }).subarray(-65);
    expect(parseCertificate(leaf.der).skiHex).toBe(createHash('sha1').update(point).digest('hex'));
  });

  test('each CA key gets its own subject name, and a long trust domain still fits the 64-character CN limit', async () => {
    const again = await makePki('ec-p256', 'ec-p256');
    expect(again.root.subject).not.toBe(pki.root.subject);
    expect(again.intermediate.subject).not.toBe(pki.intermediate.subject);

    const longTd = `${'a'.repeat(60)}.example`;
    const signer = await generateSigner('ed25519');
    const root = await createRootCertificate({ trustDomain: longTd, signer, notBefore: new Date(), notAfter: new Date(Date.now() + HOUR) });
    expect(root.subject).toBe(`O=Brevis, CN=Root CA ${root.skiHex.slice(0, 8)}`);
    expect(opensslText(root.der)).toContain(`URI:spiffe://${longTd}\n`);
  });

  test('an invalid trust domain or a mismatched issuer key is refused', async () => {
    const bad = await createRootCertificate({ trustDomain: 'Example.ORG', signer: pki.rootSigner, notBefore: new Date(), notAfter: new Date(Date.now() + HOUR) }).catch((e) => e);
    expect(isCaError(bad, 'INVALID_ARGUMENT')).toBe(true);
    const mismatch = await createIntermediateCertificate({
      trustDomain: TD,
      subjectSigner: pki.intermediateSigner,
      issuerCertDer: pki.root.der,
      issuerSigner: pki.intermediateSigner,
      notBefore: new Date(),
      notAfter: new Date(Date.now() + HOUR),
    }).catch((e) => e);
    expect(isCaError(mismatch, 'FAILED_PRECONDITION')).toBe(true);
    const notCa = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey: pki.intermediateSigner.publicKeyObject, issuer: pki.issuer, ttlSeconds: 60, now: new Date() });
    const leafAsIssuer = await createIntermediateCertificate({
      trustDomain: TD,
      subjectSigner: pki.rootSigner,
      issuerCertDer: notCa.der,
      issuerSigner: pki.intermediateSigner,
      notBefore: new Date(),
      notAfter: new Date(Date.now() + HOUR),
    }).catch((e) => e);
    expect(isCaError(leafAsIssuer, 'FAILED_PRECONDITION')).toBe(true);
  });

  test('an unsupported subject key type is refused', async () => {
    const { publicKey } = generateKeyPairSync('x25519');
    const err = await issueX509Svid({ spiffeId: 'spiffe://example.org/a', dnsNames: [], subjectPublicKey: publicKey, issuer: pki.issuer, ttlSeconds: 60, now: new Date() }).catch((e) => e);
    expect(isCaError(err, 'UNSUPPORTED_KEY')).toBe(true);
  });
});

describe('mixed key types', () => {
  test('an Ed25519 intermediate under a P-384 root issues leaves openssl accepts', async () => {
    const pki = await makePki('ec-p384', 'ed25519');
    const leaf = await issueX509Svid({ spiffeId: 'spiffe://example.org/mixed', dnsNames: [], subjectPublicKey: SUBJECT_KEYS['RSA 2048']!(), issuer: pki.issuer, ttlSeconds: 600, now: new Date() });
    const r = opensslVerify({ root: pki.root.der, intermediate: pki.intermediate.der, leaf: leaf.der }, 'sslclient');
    expect(r.ok, r.output).toBe(true);
  });
});

function colonHex(hex: string): string {
  return hex.toUpperCase().match(/../g)!.join(':');
}
