import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { threadPoolSigner } from '../ca/issue/thread-pool-signer.js';
import { signerFromPkcs8, type LocalSigner } from '../ca/keys/signer.js';
import type { KeyType } from '../ca/keys/keytype.js';
import { createIntermediateCertificate, createRootCertificate } from '../ca/x509/hierarchy.js';
import { issueX509Svid } from '../ca/x509/leaf.js';
import { ThreadPoolGate, cryptoGate } from '../ca/x509/thread-pool-gate.js';
import { pemEncode } from '../spiffe/pem.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-thread-pool-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function signer(keyType: KeyType): Promise<LocalSigner> {
  const type = keyType === 'ed25519' ? 'ed25519' : 'ec';
  const der = generateKeyPairSync(type as 'ec', {
    ...(keyType === 'ed25519' ? {} : { namedCurve: keyType === 'ec-p256' ? 'P-256' : 'P-384' }),
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'der' },
  } as { namedCurve: string; publicKeyEncoding: { type: 'spki'; format: 'der' }; privateKeyEncoding: { type: 'pkcs8'; format: 'der' } });
  return signerFromPkcs8(der.privateKey);
}

describe('threadPoolSigner', () => {
  it.each(['ec-p256', 'ec-p384'] as const)('%s: signs with the same key and DER ECDSA encoding as the signer itself', async (keyType) => {
    const s = await signer(keyType);
    const data = Buffer.from('tbs certificate bytes');
    const sig = await threadPoolSigner(s).sign(data);
    const digest = keyType === 'ec-p256' ? 'sha256' : 'sha384';
    expect(verify(digest, data, s.publicKeyObject, sig)).toBe(true);
    expect(verify(digest, data, { key: s.publicKeyObject, dsaEncoding: 'der' }, sig)).toBe(true);
    expect(verify(digest, Buffer.from('other bytes'), s.publicKeyObject, sig)).toBe(false);
  });

  it('ed25519: gives exactly the signature the signer gives (deterministic)', async () => {
    const s = await signer('ed25519');
    const data = Buffer.from('tbs certificate bytes');
    expect(Buffer.from(await threadPoolSigner(s).sign(data)).equals(Buffer.from(await s.sign(data)))).toBe(true);
  });

  it('keeps the signer facts and reuses one wrapper per signer', async () => {
    const s = await signer('ec-p256');
    const t = threadPoolSigner(s);
    expect(threadPoolSigner(s)).toBe(t);
    expect(t.keyType).toBe(s.keyType);
    expect(t.spkiDer.equals(s.spkiDer)).toBe(true);
  });

  it.each(['ec-p256', 'ec-p384', 'ed25519'] as const)('%s: SVIDs it signs pass openssl verify -x509_strict up to the root', async (keyType) => {
    const now = new Date();
    const rootSigner = await signer(keyType);
    const intSigner = await signer(keyType);
    const root = await createRootCertificate({ trustDomain: 'example.org', signer: rootSigner, notBefore: now, notAfter: new Date(now.getTime() + 86_400_000) });
    const int = await createIntermediateCertificate({ trustDomain: 'example.org', subjectSigner: intSigner, issuerCertDer: root.der, issuerSigner: rootSigner, notBefore: now, notAfter: new Date(now.getTime() + 3_600_000) });
    const subject = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } });
    const leaves = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        issueX509Svid({
          spiffeId: `spiffe://example.org/w/${i}`,
          dnsNames: [],
          subjectPublicKey: createPublicKey({ key: subject.publicKey, format: 'der', type: 'spki' }),
          subjectSpkiDer: subject.publicKey,
          issuer: { certDer: int.der, signer: threadPoolSigner(intSigner), notAfter: int.notAfter, skiHex: int.skiHex },
          ttlSeconds: 600,
          now,
        }),
      ),
    );
    const write = (name: string, der: Uint8Array) => {
      const f = path.join(dir, `${keyType}-${name}.pem`);
      fs.writeFileSync(f, pemEncode('CERTIFICATE', der));
      return f;
    };
    const rootFile = write('root', root.der);
    const intFile = write('int', int.der);
    for (const [i, leaf] of leaves.entries()) {
      const out = execFileSync('openssl', ['verify', '-x509_strict', '-CAfile', rootFile, '-untrusted', intFile, write(`leaf${i}`, leaf.der)], { encoding: 'utf8' });
      expect(out).toMatch(/: OK/);
    }
  });
});

describe('ThreadPoolGate', () => {
  it('runs at most `limit` jobs at once, in the order they came', async () => {
    const gate = new ThreadPoolGate(2);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        gate.run(async () => {
          running++;
          peak = Math.max(peak, running);
          order.push(i);
          await new Promise((r) => setTimeout(r, 5));
          running--;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('frees a slot when a job fails', async () => {
    const gate = new ThreadPoolGate(1);
    await expect(gate.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await gate.run(async () => 42)).toBe(42);
  });

  it('leaves at least one pool thread to other work', () => {
    expect(cryptoGate.limit).toBeGreaterThanOrEqual(1);
    expect(cryptoGate.limit).toBeLessThan(Math.max(2, Number(process.env.UV_THREADPOOL_SIZE) || 4));
  });
});
