import 'reflect-metadata';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import { execFileSync } from 'node:child_process';
import type { webcrypto } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Bundle } from '../spiffe/bundle.js';
import { SpiffeError } from '../spiffe/errors.js';
import { dnsNameMatches, uriHostMatches } from '../spiffe/nameConstraints.js';
import { certsToPem } from '../spiffe/pem.js';
import { getDnsSans, getUriSans, parseSvidLeaf, verifyX509Svid } from '../spiffe/svid.js';

x509.cryptoProvider.set(globalThis.crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const NOW = new Date('2030-06-01T12:00:00Z');
const CA_FROM = new Date('2020-01-01T00:00:00Z');
const CA_TO = new Date('2040-01-01T00:00:00Z');

interface Issued {
  cert: x509.X509Certificate;
  der: Buffer;
  keys: webcrypto.CryptoKeyPair;
}

interface IssueOptions {
  subject?: string;
  uris?: string[];
  dns?: string[];
  sanCritical?: boolean;
  ca?: boolean;
  pathLen?: number;
  /** Key usage flags; null leaves the extension out. */
  keyUsage?: number | null;
  keyUsageCritical?: boolean;
  eku?: string[];
  nameConstraints?: { permitted?: GeneralName[]; excluded?: GeneralName[] };
  notBefore?: Date;
  notAfter?: Date;
  extra?: x509.Extension[];
}

async function issue(signer: Issued | 'self', o: IssueOptions = {}): Promise<Issued> {
  const keys = (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const issuerKeys = signer === 'self' ? keys : signer.keys;
  const ca = o.ca ?? false;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(ca, o.pathLen, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuerKeys.publicKey),
  ];
  const defaultKu = ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign : x509.KeyUsageFlags.digitalSignature;
  const ku = o.keyUsage === undefined ? defaultKu : o.keyUsage;
  if (ku !== null) extensions.push(new x509.KeyUsagesExtension(ku, o.keyUsageCritical ?? true));
  if (o.eku) extensions.push(new x509.ExtendedKeyUsageExtension(o.eku));
  const sans = [
    ...(o.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(o.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans, o.sanCritical ?? false));
  if (o.nameConstraints) {
    const subtrees = (names?: GeneralName[]) =>
      names && new GeneralSubtrees(names.map((base) => new GeneralSubtree({ base })));
    const nc = new NameConstraints({
      permittedSubtrees: subtrees(o.nameConstraints.permitted),
      excludedSubtrees: subtrees(o.nameConstraints.excluded),
    });
    extensions.push(new x509.Extension('2.5.29.30', true, AsnConvert.serialize(nc)));
  }
  extensions.push(...(o.extra ?? []));
  const subject = o.subject ?? 'CN=test';
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: signer === 'self' ? subject : signer.cert.subject,
    publicKey: keys.publicKey,
    signingKey: issuerKeys.privateKey,
    signingAlgorithm: SIGN,
    notBefore: o.notBefore ?? (ca ? CA_FROM : new Date('2030-06-01T00:00:00Z')),
    notAfter: o.notAfter ?? (ca ? CA_TO : new Date('2030-06-02T00:00:00Z')),
    extensions,
  });
  return { cert, der: Buffer.from(cert.rawData), keys };
}

const uri = (u: string) => new GeneralName({ uniformResourceIdentifier: u });
const dnsName = (d: string) => new GeneralName({ dNSName: d });
const LEAF: IssueOptions = {
  subject: 'CN=web',
  uris: ['spiffe://example.org/web'],
  dns: ['web.example.org'],
  eku: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
};

let root: Issued;
let inter: Issued;
let leaf: Issued;
let bundle: X509Bundle;
let tmp: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-svid-'));
  root = await issue('self', { subject: 'CN=root,O=example.org', ca: true, uris: ['spiffe://example.org'] });
  inter = await issue(root, {
    subject: 'CN=intermediate,O=example.org',
    ca: true,
    pathLen: 0,
    uris: ['spiffe://example.org'],
    nameConstraints: { permitted: [uri('example.org')] },
  });
  leaf = await issue(inter, LEAF);
  bundle = new X509Bundle({ trustDomain: 'example.org', authorities: [root.der] });
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function svidRejection(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SpiffeError);
    expect((e as SpiffeError).code).toBe('SVID_INVALID');
    return (e as SpiffeError).message;
  }
  throw new Error('expected SVID_INVALID, the SVID was accepted');
}

/** Asks openssl, an independent judge, whether it accepts the chain as a TLS client certificate. */
function openssl(chain: Issued[], roots: Issued[]): { ok: boolean; output: string } {
  const files = { root: path.join(tmp, 'roots.pem'), untrusted: path.join(tmp, 'untrusted.pem'), leaf: path.join(tmp, 'leaf.pem') };
  fs.writeFileSync(files.root, certsToPem(roots.map((r) => r.der)));
  fs.writeFileSync(files.untrusted, certsToPem(chain.slice(1).map((c) => c.der)));
  fs.writeFileSync(files.leaf, certsToPem([chain[0]!.der]));
  const args = ['verify', '-x509_strict', '-purpose', 'sslclient', '-attime', String(NOW.getTime() / 1000), '-CAfile', files.root];
  if (chain.length > 1) args.push('-untrusted', files.untrusted);
  args.push(files.leaf);
  try {
    return { ok: true, output: execFileSync('openssl', args, { stdio: 'pipe' }).toString() };
  } catch (e) {
    const err = e as { stdout?: Buffer; stderr?: Buffer };
    return { ok: false, output: `${err.stdout?.toString() ?? ''}${err.stderr?.toString() ?? ''}` };
  }
}

describe('verifyX509Svid accepts', () => {
  it('a leaf signed by a name-constrained intermediate under a bundle root, as openssl does', () => {
    const v = verifyX509Svid([leaf.der, inter.der], bundle, { now: NOW });
    expect(v.spiffeId.toString()).toBe('spiffe://example.org/web');
    expect(v.dnsNames).toEqual(['web.example.org']);
    expect(v.leaf.raw.equals(leaf.der)).toBe(true);
    expect(v.path.map((c) => c.subject)).toEqual(['CN=web', 'CN=intermediate\nO=example.org', 'CN=root\nO=example.org']);
    expect(openssl([leaf, inter], [root]).ok).toBe(true);
  });

  it('a leaf signed directly by the root', async () => {
    const direct = await issue(root, LEAF);
    expect(verifyX509Svid([direct.der], bundle, { now: NOW }).path).toHaveLength(2);
  });

  it('a chain that also carries the root, or carries extra certificates in any order', async () => {
    const stranger = await issue('self', { subject: 'CN=stranger', ca: true });
    expect(verifyX509Svid([leaf.der, inter.der, root.der], bundle, { now: NOW }).path).toHaveLength(3);
    expect(verifyX509Svid([leaf.der, stranger.der, root.der, inter.der], bundle, { now: NOW }).path).toHaveLength(3);
  });

  it('a bundle holding several roots, finding the one that issued the chain', async () => {
    const other = await issue('self', { subject: 'CN=other root', ca: true });
    const two = new X509Bundle({ trustDomain: 'example.org', authorities: [other.der, root.der] });
    const v = verifyX509Svid([leaf.der, inter.der], two, { now: NOW });
    expect(v.path[2]!.raw.equals(root.der)).toBe(true);
  });

  it('a leaf without extKeyUsage, and one with only anyExtendedKeyUsage', async () => {
    const plain = await issue(inter, { ...LEAF, eku: undefined });
    expect(verifyX509Svid([plain.der, inter.der], bundle, { now: NOW }).spiffeId.path).toBe('/web');
    const any = await issue(inter, { ...LEAF, eku: ['2.5.29.37.0'] });
    expect(verifyX509Svid([any.der, inter.der], bundle, { now: NOW }).spiffeId.path).toBe('/web');
  });

  it('a leaf with keyEncipherment and keyAgreement besides digitalSignature', async () => {
    const f = x509.KeyUsageFlags;
    const l = await issue(inter, { ...LEAF, keyUsage: f.digitalSignature | f.keyEncipherment | f.keyAgreement });
    expect(verifyX509Svid([l.der, inter.der], bundle, { now: NOW }).spiffeId.toString()).toBe('spiffe://example.org/web');
  });

  it('a leaf with an empty subject and a critical SAN extension', async () => {
    const l = await issue(inter, { ...LEAF, subject: '', sanCritical: true });
    expect(l.cert.subject).toBe('');
    expect(verifyX509Svid([l.der, inter.der], bundle, { now: NOW }).spiffeId.path).toBe('/web');
  });

  it('on the first and the last second of every validity period', () => {
    expect(verifyX509Svid([leaf.der, inter.der], bundle, { now: new Date('2030-06-01T00:00:00Z') }).spiffeId).toBeDefined();
    expect(verifyX509Svid([leaf.der, inter.der], bundle, { now: new Date('2030-06-02T00:00:00Z') }).spiffeId).toBeDefined();
  });

  it('at the real time when no time is given', async () => {
    const current = await issue(inter, { ...LEAF, notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000) });
    expect(verifyX509Svid([current.der, inter.der], bundle).spiffeId.path).toBe('/web');
    expect(svidRejection(() => verifyX509Svid([leaf.der, inter.der], bundle))).toMatch(/the leaf (expired|is not valid before)/);
  });
});

describe('verifyX509Svid rejects', () => {
  it('an expired leaf and a leaf not valid yet', () => {
    expect(svidRejection(() => verifyX509Svid([leaf.der, inter.der], bundle, { now: new Date('2030-06-02T00:00:01Z') }))).toMatch(
      /the leaf expired at 2030-06-02T00:00:00.000Z/,
    );
    expect(svidRejection(() => verifyX509Svid([leaf.der, inter.der], bundle, { now: new Date('2030-05-31T23:59:59Z') }))).toMatch(
      /the leaf is not valid before 2030-06-01T00:00:00.000Z/,
    );
  });

  it('a leaf under an expired intermediate', async () => {
    const old = await issue(root, { subject: 'CN=old', ca: true, notAfter: new Date('2030-03-01T00:00:00Z') });
    const l = await issue(old, LEAF);
    expect(svidRejection(() => verifyX509Svid([l.der, old.der], bundle, { now: NOW }))).toMatch(/certificate 1 of the chain expired/);
  });

  it('a leaf under an expired root', async () => {
    const oldRoot = await issue('self', { subject: 'CN=old root', ca: true, notAfter: new Date('2030-01-01T00:00:00Z') });
    const l = await issue(oldRoot, LEAF);
    const b = new X509Bundle({ trustDomain: 'example.org', authorities: [oldRoot.der] });
    expect(svidRejection(() => verifyX509Svid([l.der], b, { now: NOW }))).toMatch(/bundle authority 0 .* expired/);
  });

  it("a leaf whose trust domain is not the bundle's", async () => {
    const other = await issue(root, { ...LEAF, uris: ['spiffe://other.org/web'] });
    expect(svidRejection(() => verifyX509Svid([other.der], bundle, { now: NOW }))).toMatch(
      /trust domain 'other.org' does not match the bundle's trust domain 'example.org'/,
    );
  });

  it('a leaf with two URI SANs, even both in the trust domain', async () => {
    const two = await issue(inter, { ...LEAF, uris: ['spiffe://example.org/web', 'spiffe://example.org/db'] });
    expect(svidRejection(() => verifyX509Svid([two.der, inter.der], bundle, { now: NOW }))).toMatch(/2 URI SANs.*exactly one/);
  });

  it('a leaf with no URI SAN', async () => {
    const none = await issue(inter, { ...LEAF, uris: [] });
    expect(svidRejection(() => verifyX509Svid([none.der, inter.der], bundle, { now: NOW }))).toMatch(/0 URI SANs/);
  });

  it('a leaf whose URI SAN is not a valid SPIFFE ID or names the trust domain itself', async () => {
    const dots = await issue(inter, { ...LEAF, uris: ['spiffe://example.org/a/../b'] });
    expect(svidRejection(() => verifyX509Svid([dots.der, inter.der], bundle, { now: NOW }))).toMatch(
      /not a valid SPIFFE ID: path contains a dot segment/,
    );
    const https = await issue(inter, { ...LEAF, uris: ['https://example.org/web'] });
    expect(svidRejection(() => verifyX509Svid([https.der, inter.der], bundle, { now: NOW }))).toMatch(/scheme must be 'spiffe'/);
    const bare = await issue(inter, { ...LEAF, uris: ['spiffe://example.org'] });
    expect(svidRejection(() => verifyX509Svid([bare.der, inter.der], bundle, { now: NOW }))).toMatch(/has no path/);
  });

  it('a leaf that is a CA', async () => {
    const caLeaf = await issue(inter, { ...LEAF, ca: true, keyUsage: x509.KeyUsageFlags.digitalSignature });
    expect(svidRejection(() => verifyX509Svid([caLeaf.der, inter.der], bundle, { now: NOW }))).toMatch(/leaf is a CA certificate/);
  });

  it('a leaf with keyCertSign or cRLSign', async () => {
    const f = x509.KeyUsageFlags;
    const kcs = await issue(inter, { ...LEAF, keyUsage: f.digitalSignature | f.keyCertSign });
    expect(svidRejection(() => verifyX509Svid([kcs.der, inter.der], bundle, { now: NOW }))).toMatch(/keyUsage has keyCertSign/);
    const crl = await issue(inter, { ...LEAF, keyUsage: f.digitalSignature | f.cRLSign });
    expect(svidRejection(() => verifyX509Svid([crl.der, inter.der], bundle, { now: NOW }))).toMatch(/keyUsage has cRLSign/);
  });

  it('a leaf with no keyUsage, a non-critical keyUsage, or one without digitalSignature', async () => {
    const none = await issue(inter, { ...LEAF, keyUsage: null });
    expect(svidRejection(() => verifyX509Svid([none.der, inter.der], bundle, { now: NOW }))).toMatch(/no keyUsage extension/);
    const soft = await issue(inter, { ...LEAF, keyUsageCritical: false });
    expect(svidRejection(() => verifyX509Svid([soft.der, inter.der], bundle, { now: NOW }))).toMatch(/keyUsage extension is not critical/);
    const enc = await issue(inter, { ...LEAF, keyUsage: x509.KeyUsageFlags.keyEncipherment });
    expect(svidRejection(() => verifyX509Svid([enc.der, inter.der], bundle, { now: NOW }))).toMatch(/lacks digitalSignature/);
  });

  it('a leaf whose extKeyUsage lacks serverAuth or clientAuth', async () => {
    const clientOnly = await issue(inter, { ...LEAF, eku: [x509.ExtendedKeyUsage.clientAuth] });
    expect(svidRejection(() => verifyX509Svid([clientOnly.der, inter.der], bundle, { now: NOW }))).toMatch(/lacks serverAuth/);
    const serverOnly = await issue(inter, { ...LEAF, eku: [x509.ExtendedKeyUsage.serverAuth] });
    expect(svidRejection(() => verifyX509Svid([serverOnly.der, inter.der], bundle, { now: NOW }))).toMatch(/lacks clientAuth/);
  });

  it('a leaf with an empty subject and a non-critical SAN extension', async () => {
    const l = await issue(inter, { ...LEAF, subject: '', sanCritical: false });
    expect(svidRejection(() => verifyX509Svid([l.der, inter.der], bundle, { now: NOW }))).toMatch(/subjectAltName extension must be critical/);
  });

  it('a foreign-trust-domain leaf forged under the name-constrained intermediate, as openssl does', async () => {
    // The root also anchors other.org (shared roots are allowed, if discouraged), so only the
    // intermediate's URI name constraint stands between its key and other.org identities.
    const forged = await issue(inter, { ...LEAF, uris: ['spiffe://other.org/web'], dns: [] });
    const otherBundle = new X509Bundle({ trustDomain: 'other.org', authorities: [root.der] });
    expect(svidRejection(() => verifyX509Svid([forged.der, inter.der], otherBundle, { now: NOW }))).toMatch(
      /the leaf: URI SAN 'spiffe:\/\/other.org\/web' is outside the permitted subtrees of certificate 1 of the chain/,
    );
    const judged = openssl([forged, inter], [root]);
    expect(judged.ok).toBe(false);
    expect(judged.output).toMatch(/permitted subtree violation/);
  });

  it('a leaf in a subdomain of the trust domain under a constraint without a leading dot', async () => {
    const sub = await issue(inter, { ...LEAF, uris: ['spiffe://sub.example.org/web'], dns: [] });
    const subBundle = new X509Bundle({ trustDomain: 'sub.example.org', authorities: [root.der] });
    expect(svidRejection(() => verifyX509Svid([sub.der, inter.der], subBundle, { now: NOW }))).toMatch(/outside the permitted subtrees/);
  });

  it('under a leading-dot constraint: subdomains pass, the domain itself does not', async () => {
    const dotInter = await issue(root, { subject: 'CN=dot', ca: true, nameConstraints: { permitted: [uri('.example.org')] } });
    const sub = await issue(dotInter, { ...LEAF, uris: ['spiffe://sub.example.org/web'], dns: [] });
    const subBundle = new X509Bundle({ trustDomain: 'sub.example.org', authorities: [root.der] });
    expect(verifyX509Svid([sub.der, dotInter.der], subBundle, { now: NOW }).spiffeId.trustDomain).toBe('sub.example.org');
    const top = await issue(dotInter, { ...LEAF, dns: [] });
    expect(svidRejection(() => verifyX509Svid([top.der, dotInter.der], bundle, { now: NOW }))).toMatch(/outside the permitted subtrees/);
  });

  it('a leaf inside an excluded URI subtree', async () => {
    const ex = await issue(root, { subject: 'CN=ex', ca: true, nameConstraints: { excluded: [uri('example.org')] } });
    const l = await issue(ex, { ...LEAF, dns: [] });
    expect(svidRejection(() => verifyX509Svid([l.der, ex.der], bundle, { now: NOW }))).toMatch(/inside an excluded subtree/);
  });

  it('a DNS SAN outside a DNS name constraint', async () => {
    const dnsInter = await issue(root, { subject: 'CN=dns', ca: true, nameConstraints: { permitted: [dnsName('example.org')] } });
    const ok = await issue(dnsInter, { ...LEAF, dns: ['web.example.org'] });
    expect(verifyX509Svid([ok.der, dnsInter.der], bundle, { now: NOW }).dnsNames).toEqual(['web.example.org']);
    const evil = await issue(dnsInter, { ...LEAF, dns: ['web.evil.com'] });
    expect(svidRejection(() => verifyX509Svid([evil.der, dnsInter.der], bundle, { now: NOW }))).toMatch(
      /DNS SAN 'web.evil.com' is outside the permitted subtrees/,
    );
  });

  it('a constrained name form this validator does not process', async () => {
    const ipInter = await issue(root, {
      subject: 'CN=ip',
      ca: true,
      nameConstraints: { permitted: [new GeneralName({ rfc822Name: 'example.org' })] },
    });
    const l = await issue(ipInter, LEAF);
    expect(verifyX509Svid([l.der, ipInter.der], bundle, { now: NOW }).spiffeId.path).toBe('/web');
    const withEmail = await issue(ipInter, { ...LEAF, subject: 'CN=web,E=web@example.org' });
    expect(svidRejection(() => verifyX509Svid([withEmail.der, ipInter.der], bundle, { now: NOW }))).toMatch(
      /constrains email names, which this validator does not process/,
    );
  });

  it('a path longer than the pathLenConstraint of the intermediate', async () => {
    const sub = await issue(inter, { subject: 'CN=sub-intermediate', ca: true, uris: ['spiffe://example.org'] });
    const l = await issue(sub, LEAF);
    expect(svidRejection(() => verifyX509Svid([l.der, sub.der, inter.der], bundle, { now: NOW }))).toMatch(
      /certificate 2 of the chain allows 0 intermediate CA certificate\(s\) below it \(pathLenConstraint\) but the path has 1/,
    );
    expect(openssl([l, sub, inter], [root]).ok).toBe(false);
  });

  it('a leaf signed by a certificate that is not a CA', async () => {
    const notCa = await issue(root, { subject: 'CN=not a ca', ca: false, keyUsage: x509.KeyUsageFlags.keyCertSign });
    const l = await issue(notCa, LEAF);
    expect(svidRejection(() => verifyX509Svid([l.der, notCa.der], bundle, { now: NOW }))).toMatch(/is not a CA/);
  });

  it('a leaf whose signature was tampered with', () => {
    const broken = Buffer.from(leaf.der);
    broken[broken.length - 5] ^= 0x01;
    expect(svidRejection(() => verifyX509Svid([broken, inter.der], bundle, { now: NOW }))).toMatch(
      /signature of the leaf does not verify with the key of certificate 1 of the chain/,
    );
  });

  it('a leaf whose issuer name matches but whose key is an impostor', async () => {
    const impostor = await issue('self', { subject: 'CN=intermediate,O=example.org', ca: true });
    const l = await issue(impostor, LEAF);
    // The impostor's leaf names the real intermediate as issuer but carries the impostor's key id.
    expect(svidRejection(() => verifyX509Svid([l.der, inter.der], bundle, { now: NOW }))).toMatch(/no certification path|signature/);
  });

  it('a chain that leads to a root the bundle does not hold', async () => {
    const otherRoot = await issue('self', { subject: 'CN=other root', ca: true });
    const l = await issue(otherRoot, LEAF);
    expect(svidRejection(() => verifyX509Svid([l.der, otherRoot.der], bundle, { now: NOW }))).toMatch(
      /no certification path .* \(unknown issuer\)/,
    );
  });

  it('a leaf whose intermediate is missing from the chain', () => {
    expect(svidRejection(() => verifyX509Svid([leaf.der], bundle, { now: NOW }))).toMatch(/unknown issuer/);
  });

  it('a leaf with an unsupported critical extension', async () => {
    const l = await issue(inter, { ...LEAF, extra: [new x509.Extension('1.3.6.1.4.1.99999.1', true, new Uint8Array([0x05, 0x00]))] });
    expect(svidRejection(() => verifyX509Svid([l.der, inter.der], bundle, { now: NOW }))).toMatch(
      /unsupported critical extension 1.3.6.1.4.1.99999.1/,
    );
  });

  it('an empty chain, an overlong chain and bytes that are not a certificate', () => {
    expect(svidRejection(() => verifyX509Svid([], bundle, { now: NOW }))).toMatch(/chain is empty/);
    expect(svidRejection(() => verifyX509Svid(Array(10).fill(leaf.der), bundle, { now: NOW }))).toMatch(/more than the 9 accepted/);
    expect(svidRejection(() => verifyX509Svid([Buffer.from([0x30, 0x00])], bundle, { now: NOW }))).toMatch(/leaf is not a DER X.509/);
    expect(svidRejection(() => verifyX509Svid([leaf.der, Buffer.concat([inter.der, Buffer.from([0])])], bundle, { now: NOW }))).toMatch(
      /certificate 1 has trailing bytes/,
    );
  });
});

describe('parseSvidLeaf and SAN helpers', () => {
  it('returns the SPIFFE ID and DNS names of a valid leaf without path validation', () => {
    const l = parseSvidLeaf(leaf.der);
    expect(l.spiffeId.toString()).toBe('spiffe://example.org/web');
    expect(l.dnsNames).toEqual(['web.example.org']);
  });

  it('applies the leaf rules', () => {
    expect(svidRejection(() => parseSvidLeaf(inter.der))).toMatch(/no path|CA certificate/);
  });

  it('lists URI and DNS SANs of DER or parsed certificates', () => {
    expect(getUriSans(leaf.der)).toEqual(['spiffe://example.org/web']);
    expect(getDnsSans(leaf.der)).toEqual(['web.example.org']);
    const parsed = verifyX509Svid([leaf.der, inter.der], bundle, { now: NOW }).leaf;
    expect(getUriSans(parsed)).toEqual(['spiffe://example.org/web']);
    expect(getDnsSans(root.der)).toEqual([]);
  });
});

describe('name constraint matching (RFC 5280)', () => {
  it('matches a URI host constraint exactly, or below a leading dot only', () => {
    expect(uriHostMatches('example.org', 'example.org')).toBe(true);
    expect(uriHostMatches('example.org', 'EXAMPLE.org')).toBe(true);
    expect(uriHostMatches('example.org', 'sub.example.org')).toBe(false);
    expect(uriHostMatches('example.org', 'badexample.org')).toBe(false);
    expect(uriHostMatches('.example.org', 'sub.example.org')).toBe(true);
    expect(uriHostMatches('.example.org', 'a.b.example.org')).toBe(true);
    expect(uriHostMatches('.example.org', 'example.org')).toBe(false);
    expect(uriHostMatches('.example.org', 'badexample.org')).toBe(false);
    expect(uriHostMatches('example.org', '')).toBe(false);
  });

  it('matches a DNS constraint on whole labels, itself and below', () => {
    expect(dnsNameMatches('example.org', 'example.org')).toBe(true);
    expect(dnsNameMatches('example.org', 'a.example.org')).toBe(true);
    expect(dnsNameMatches('example.org', 'badexample.org')).toBe(false);
    expect(dnsNameMatches('.example.org', 'example.org')).toBe(false);
    expect(dnsNameMatches('.example.org', 'a.example.org')).toBe(true);
    expect(dnsNameMatches('', 'anything.test')).toBe(true);
  });
});
