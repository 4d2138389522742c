import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { csrForSpki } from '../ca/x509/create-csr.js';
import { createCsr, parseCsr, parseCsrAsync } from '../ca/x509/csr.js';
import { DerReader, TAG, readerOf } from '../ca/x509/der.js';

let tmp: string;
let n = 0;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'brevis-csr-fast-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/* Keys go through DER so that no test touches a KeyObject still owned by a key generation job (see x509-spki.test.ts). */
function pair(type: string, options: object = {}): { privateKey: KeyObject; publicKey: KeyObject } {
  const der = generateKeyPairSync(type as 'ec', {
    ...(options as { namedCurve: string }),
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'der' },
  });
  return {
    privateKey: createPrivateKey({ key: der.privateKey, format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: der.publicKey, format: 'der', type: 'spki' }),
  };
}

const KEYS = {
  'P-256': () => pair('ec', { namedCurve: 'P-256' }),
  'P-384': () => pair('ec', { namedCurve: 'P-384' }),
  Ed25519: () => pair('ed25519'),
  'RSA 2048': () => pair('rsa', { modulusLength: 2048 }),
};

/** The CSR @peculiar/x509 builds for the key (what createCsr used before). */
async function peculiarCsr(privateKey: KeyObject, publicKey: KeyObject, name: string): Promise<Buffer> {
  const params =
    name === 'P-256'
      ? { imp: { name: 'ECDSA', namedCurve: 'P-256' }, alg: { name: 'ECDSA', hash: 'SHA-256' } }
      : name === 'P-384'
        ? { imp: { name: 'ECDSA', namedCurve: 'P-384' }, alg: { name: 'ECDSA', hash: 'SHA-384' } }
        : name === 'Ed25519'
          ? { imp: { name: 'Ed25519' }, alg: { name: 'Ed25519' } }
          : { imp: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, alg: { name: 'RSASSA-PKCS1-v1_5' } };
  const subtle = globalThis.crypto.subtle;
  const keys = {
    privateKey: await subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), params.imp, false, ['sign']),
    publicKey: await subtle.importKey('spki', publicKey.export({ type: 'spki', format: 'der' }), params.imp, true, ['verify']),
  };
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: params.alg }, globalThis.crypto);
  return Buffer.from(csr.rawData);
}

/** CertificationRequestInfo and signatureAlgorithm, the parts that do not depend on ECDSA's random nonce. */
function unsignedParts(der: Buffer): { info: Buffer; algorithm: Buffer; signature: Buffer } {
  const csr = readerOf(new DerReader(der).read(), TAG.SEQUENCE, 'csr');
  return { info: csr.read().raw, algorithm: csr.read().raw, signature: csr.read().content.subarray(1) };
}

function opensslCsr(privateKey: KeyObject, extra: string[] = []): Buffer {
  const keyPath = join(tmp, `key-${n}.pem`);
  const csrPath = join(tmp, `csr-${n++}.der`);
  writeFileSync(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  execFileSync('openssl', ['req', '-new', '-key', keyPath, '-subj', '/CN=workload', '-outform', 'DER', '-out', csrPath, ...extra], { stdio: 'ignore' });
  return readFileSync(csrPath);
}

type Outcome = { ok: true; keyType: string; spki: string; key: string; rsaBits?: number } | { ok: false; code: string; message: string };

function outcomeOf(f: () => ReturnType<typeof parseCsr>): Outcome {
  try {
    const c = f();
    return { ok: true, keyType: c.keyType, spki: c.spkiDer.toString('hex'), key: c.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'), ...(c.rsaBits ? { rsaBits: c.rsaBits } : {}) };
  } catch (e) {
    return { ok: false, code: (e as { code: string }).code, message: (e as Error).message };
  }
}

async function asyncOutcomeOf(der: Buffer): Promise<Outcome> {
  try {
    const c = await parseCsrAsync(der);
    return { ok: true, keyType: c.keyType, spki: c.spkiDer.toString('hex'), key: c.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'), ...(c.rsaBits ? { rsaBits: c.rsaBits } : {}) };
  } catch (e) {
    return { ok: false, code: (e as { code: string }).code, message: (e as Error).message };
  }
}

describe('createCsr', () => {
  test.each(['Ed25519', 'RSA 2048'] as const)('writes exactly the bytes @peculiar/x509 wrote for a %s key (deterministic signatures)', async (name) => {
    const { privateKey, publicKey } = KEYS[name]();
    expect((await createCsr(privateKey, publicKey)).equals(await peculiarCsr(privateKey, publicKey, name))).toBe(true);
  });

  test.each(['P-256', 'P-384'] as const)('writes the same request and algorithm as @peculiar/x509 for a %s key, with a valid ECDSA signature', async (name) => {
    const { privateKey, publicKey } = KEYS[name]();
    const mine = unsignedParts(await createCsr(privateKey, publicKey));
    const theirs = unsignedParts(await peculiarCsr(privateKey, publicKey, name));
    expect(mine.info.equals(theirs.info)).toBe(true);
    expect(mine.algorithm.equals(theirs.algorithm)).toBe(true);
    expect(verify(name === 'P-256' ? 'sha256' : 'sha384', mine.info, publicKey, mine.signature)).toBe(true);
  });

  test('csrForSpki signs the given SubjectPublicKeyInfo as is', () => {
    const { privateKey, publicKey } = KEYS['P-256']();
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const csr = parseCsr(csrForSpki(privateKey, spki, 'ec-p256'));
    expect(csr.spkiDer.equals(spki)).toBe(true);
  });
});

describe('parseCsrAsync and the JWK key import', () => {
  const vectors: Array<[string, Buffer]> = [];
  beforeAll(async () => {
    for (const [name, make] of Object.entries(KEYS)) {
      const { privateKey, publicKey } = make();
      const good = opensslCsr(privateKey, name === 'P-384' ? ['-sha384'] : []);
      vectors.push([`${name} openssl`, good], [`${name} createCsr`, await createCsr(privateKey, publicKey)]);
      // Every byte of the signature flipped in turn (some make a malformed ECDSA DER, some a wrong signature).
      const sigLen = unsignedParts(good).signature.length;
      for (let i = 1; i <= Math.min(sigLen, 80); i++) {
        const bad = Buffer.from(good);
        bad[bad.length - i]! ^= 0x01;
        vectors.push([`${name} signature byte -${i}`, bad]);
      }
      for (const len of [0, 1, 10, good.length - 1]) vectors.push([`${name} truncated to ${len}`, good.subarray(0, len)]);
      vectors.push([`${name} trailing byte`, Buffer.concat([good, Buffer.from([0])])]);
      const tampered = Buffer.from(good);
      tampered[tampered.indexOf(Buffer.from('workload'))] = 0x57;
      vectors.push([`${name} tampered subject`, tampered]);
      // The key itself corrupted (off the curve for EC), then signed by the real key.
      const spki = Buffer.from(publicKey.export({ type: 'spki', format: 'der' }));
      if (name !== 'RSA 2048') {
        for (let i = 1; i <= 8; i++) {
          const mutated = Buffer.from(spki);
          mutated[mutated.length - i * 3]! ^= 0x10;
          const type = name === 'P-256' ? 'ec-p256' : name === 'P-384' ? 'ec-p384' : 'ed25519';
          vectors.push([`${name} corrupted key ${i}`, csrForSpki(privateKey, mutated, type)]);
        }
      }
    }
    vectors.push(['RSA PSS SHA-256', opensslCsr(KEYS['RSA 2048']().privateKey, ['-sha256', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32'])]);
    vectors.push(['RSA SHA-1', opensslCsr(KEYS['RSA 2048']().privateKey, ['-sha1'])]);
    vectors.push(['P-521', opensslCsr(pair('ec', { namedCurve: 'P-521' }).privateKey)]);
    vectors.push(['secp256k1', opensslCsr(pair('ec', { namedCurve: 'secp256k1' }).privateKey)]);
    vectors.push(['Ed448', opensslCsr(pair('ed448').privateKey)]);
  });

  test('accept and refuse every vector exactly as the synchronous parse, with the same errors', async () => {
    let accepted = 0;
    for (const [name, der] of vectors) {
      const sync = outcomeOf(() => parseCsr(der));
      expect(await asyncOutcomeOf(der), name).toEqual(sync);
      if (sync.ok) accepted++;
    }
    expect(accepted).toBeGreaterThanOrEqual(9);
    expect(vectors.length - accepted).toBeGreaterThan(300);
  });

  test('return for every accepted CSR the key the DER decoder returns', () => {
    for (const [name, der] of vectors) {
      const r = outcomeOf(() => parseCsr(der));
      if (!r.ok) continue;
      const generic = createPublicKey({ key: Buffer.from(r.spki, 'hex'), format: 'der', type: 'spki' });
      expect(r.key, name).toBe(generic.export({ type: 'spki', format: 'der' }).toString('hex'));
    }
  });

  test('refuse a CSR whose EC key is off the curve as a malformed key, as the DER decoder does', () => {
    const corrupted = vectors.filter(([name]) => /^P-(256|384) corrupted key/.test(name));
    expect(corrupted.length).toBe(16);
    for (const [name, der] of corrupted) {
      expect(outcomeOf(() => parseCsr(der)), name).toEqual({ ok: false, code: 'CSR_INVALID', message: 'CSR public key is malformed' });
    }
  });
});
