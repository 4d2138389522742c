/**
 * The mint workers (ca/issue/mint-pool.ts): SVIDs minted from CSRs in worker
 * threads are the certificates the in-thread path mints (same fields, judged
 * by openssl), bad CSRs get the same errors, a batch keeps its order, a
 * rotated intermediate signs at once, and a dying worker fails only what it
 * held and is replaced. A lone call finding the workers idle is minted in
 * the calling thread, with the same result.
 */
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { CaError } from '../ca/errors.js';
import { localSigner } from '../ca/issue/mint-item.js';
import { MintPool, mintWorkerScript } from '../ca/issue/mint-pool.js';
import { X509Minter } from '../ca/issue/x509-minter.js';
import { createCsr } from '../ca/x509/create-csr.js';
import { parseCertificate } from '../ca/x509/parse.js';
import { newKeyWithCsr } from '../agent/svid/new-key.js';
import { LTD, openLifecycleRig, opensslVerify, type LifecycleRig } from './support/lifecycle-harness.js';

let rig: LifecycleRig | undefined;
let minters: X509Minter[] = [];
afterEach(async () => {
  for (const m of minters) await m.close();
  minters = [];
  await rig?.cleanup();
  rig = undefined;
});

/**
 * A minter whose lone calls go to the workers too (inlineWhenIdle off), unless
 * `inlineWhenIdle`: then every lone call finding the workers idle is minted
 * inline however busy the test's event loop was (the loop guard has a test of its own).
 */
async function setup(mintWorkers: number, inlineWhenIdle = false) {
  rig = await openLifecycleRig();
  const r = rig;
  const minter = new X509Minter({ authority: r.lifecycle.x509, clock: r.clock, backdateSeconds: 30, mintWorkers, inlineWhenIdle, ...(inlineWhenIdle ? { inlineMaxLoopUtilization: 1.01 } : {}) });
  minters.push(minter);
  return { rig: r, minter, roots: () => r.lifecycle.x509.bundle().roots };
}

/** Everything of a parsed SVID but what is random (serial, signature and the bytes they change). */
function fields(der: Buffer) {
  const c = parseCertificate(der);
  return {
    issuer: c.issuerDer.toString('hex'),
    subject: c.subjectDer.toString('hex'),
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    spki: c.spkiDer.toString('hex'),
    signatureAlgorithm: c.signatureAlgorithmOid,
    extensions: c.extensions.map((e) => ({ ...e, value: Buffer.from(e.value as Uint8Array).toString('hex') })),
    serialBytes: Buffer.from(c.serialHex, 'hex').length <= 16,
  };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return e instanceof CaError ? `${e.code}: ${e.message}` : `not a CaError: ${String(e)}`;
  }
}

describe('mint workers', () => {
  it('the compiled worker script is found (npm test builds dist/ first)', () => {
    expect(mintWorkerScript()).toBeDefined();
  });

  it('mint the certificate the in-thread path mints for the same CSR, and openssl verifies it', async () => {
    const { rig: r, minter, roots } = await setup(2);
    expect(minter.workers).toBe(2);
    const inThread = new X509Minter({ authority: r.lifecycle.x509, clock: r.clock, backdateSeconds: 30, mintWorkers: 0 });
    expect(inThread.workers).toBe(0);
    const key = await newKeyWithCsr();
    const req = { csr: key.csr, spiffeId: `spiffe://${LTD}/web`, dnsNames: ['web.example.org'], ttlSeconds: 600 };
    const a = await minter.mintFromCsr(req);
    const b = await inThread.mintFromCsr(req);
    expect(fields(a.chain[0]!)).toEqual(fields(b.chain[0]!));
    expect(a.chain.slice(1)).toEqual(b.chain.slice(1));
    expect(a.serialHex).not.toBe(b.serialHex);
    expect(a.serialHex).toBe(parseCertificate(a.chain[0]!).serialHex);
    expect(a.notAfter.getTime()).toBe(b.notAfter.getTime());
    expect(parseCertificate(a.chain[0]!).spkiDer.equals(key.spki)).toBe(true);
    expect(opensslVerify(r.dir, a.chain, roots(), r.clock.now())).toBe('');
  });

  it.each(['ec-p384', 'ed25519', 'rsa'] as const)('mint for a %s subject key', async (type) => {
    const { rig: r, minter, roots } = await setup(1);
    const pair =
      type === 'rsa'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : type === 'ed25519'
          ? generateKeyPairSync('ed25519')
          : generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const s = await minter.mintFromCsr({ csr: await createCsr(pair.privateKey, pair.publicKey), spiffeId: `spiffe://${LTD}/k`, dnsNames: [], ttlSeconds: 300 });
    expect(opensslVerify(r.dir, s.chain, roots(), r.clock.now())).toBe('');
  });

  it('refuse bad CSRs with the same code and message as the in-thread path', async () => {
    const { rig: r, minter } = await setup(2);
    const inThread = new X509Minter({ authority: r.lifecycle.x509, clock: r.clock, backdateSeconds: 30, mintWorkers: 0 });
    const good = (await newKeyWithCsr()).csr;
    const wrongSignature = Buffer.from(good);
    wrongSignature[wrongSignature.length - 3]! ^= 0x01;
    const weakRsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const cases: Buffer[] = [
      Buffer.alloc(0),
      good.subarray(0, good.length - 10),
      wrongSignature,
      Buffer.concat([good, Buffer.from([0])]),
      Buffer.alloc(20_000, 0x30),
      await createCsr(weakRsa.privateKey, weakRsa.publicKey).catch(() => Buffer.from('x')),
    ];
    for (const csr of cases) {
      const req = { csr, spiffeId: `spiffe://${LTD}/x`, dnsNames: [], ttlSeconds: 300 };
      const [viaWorker, here] = [await codeOf(minter.mintFromCsr(req)), await codeOf(inThread.mintFromCsr(req))];
      expect(viaWorker).toBe(here);
      expect(viaWorker).toMatch(/^(CSR_INVALID|UNSUPPORTED_KEY): /);
    }
  });

  it('answer a batch of good and bad CSRs in order, spread over the workers', async () => {
    const { minter } = await setup(2);
    const keys = await Promise.all(Array.from({ length: 40 }, () => newKeyWithCsr()));
    const outcomes = await Promise.all(
      keys.map((k, i) =>
        minter
          .mintFromCsr({ csr: i % 7 === 3 ? k.csr.subarray(0, 30) : k.csr, spiffeId: `spiffe://${LTD}/w/${i}`, dnsNames: [], ttlSeconds: 300 })
          .then((s) => ({ i, san: parseCertificate(s.chain[0]!).subjectAltName!.uris[0], spki: parseCertificate(s.chain[0]!).spkiDer }), (e: CaError) => ({ i, code: e.code })),
      ),
    );
    outcomes.forEach((o, i) => {
      if (i % 7 === 3) expect(o).toEqual({ i, code: 'CSR_INVALID' });
      else {
        expect(o).toMatchObject({ i, san: `spiffe://${LTD}/w/${i}` });
        expect((o as { spki: Buffer }).spki.equals(keys[i]!.spki)).toBe(true);
      }
    });
    expect(new Set(outcomes.map((o) => ('san' in o ? o.san : o.i))).size).toBe(40);
  });

  it('mint a lone call in the calling thread when every worker is idle: the same certificate, judged by openssl', async () => {
    const { rig: r, minter, roots } = await setup(2, true);
    const viaWorker = new X509Minter({ authority: r.lifecycle.x509, clock: r.clock, backdateSeconds: 30, mintWorkers: 1, inlineWhenIdle: false });
    const inThread = new X509Minter({ authority: r.lifecycle.x509, clock: r.clock, backdateSeconds: 30, mintWorkers: 0 });
    minters.push(viaWorker, inThread);
    const key = await newKeyWithCsr();
    const req = { csr: key.csr, spiffeId: `spiffe://${LTD}/web`, dnsNames: ['web.example.org'], ttlSeconds: 600 };
    const a = await minter.mintFromCsr(req);
    expect(minter.inlineMints).toBe(1);
    const b = await viaWorker.mintFromCsr(req);
    expect(viaWorker.inlineMints).toBe(0);
    const c = await inThread.mintFromCsr(req);
    expect(fields(a.chain[0]!)).toEqual(fields(b.chain[0]!));
    expect(fields(a.chain[0]!)).toEqual(fields(c.chain[0]!));
    expect(a.chain.slice(1)).toEqual(b.chain.slice(1));
    expect(a.serialHex).toBe(parseCertificate(a.chain[0]!).serialHex);
    expect(a.notAfter.getTime()).toBe(b.notAfter.getTime());
    expect(opensslVerify(r.dir, a.chain, roots(), r.clock.now())).toBe('');
    // A rotated intermediate signs the next lone call at once.
    const p = await r.lifecycle.prepare('x509-intermediate', { caller: 'test' });
    await r.lifecycle.activate('x509-intermediate', p.prepared.id, { caller: 'test' });
    const after = await minter.mintFromCsr(req);
    expect(minter.inlineMints).toBe(2);
    expect(parseCertificate(after.chain[0]!).akiHex).toBe(p.prepared.id);
    expect(opensslVerify(r.dir, after.chain, roots(), r.clock.now())).toBe('');
  });

  it('refuse bad CSRs minted inline with the same code and message as the in-thread path', async () => {
    const { rig: r, minter } = await setup(2, true);
    const inThread = new X509Minter({ authority: r.lifecycle.x509, clock: r.clock, backdateSeconds: 30, mintWorkers: 0 });
    const good = (await newKeyWithCsr()).csr;
    const wrongSignature = Buffer.from(good);
    wrongSignature[wrongSignature.length - 3]! ^= 0x01;
    const cases = [Buffer.alloc(0), good.subarray(0, good.length - 10), wrongSignature, Buffer.concat([good, Buffer.from([0])])];
    for (const csr of cases) {
      const req = { csr, spiffeId: `spiffe://${LTD}/x`, dnsNames: [], ttlSeconds: 300 };
      const [inline, here] = [await codeOf(minter.mintFromCsr(req)), await codeOf(inThread.mintFromCsr(req))];
      expect(inline).toBe(here);
      expect(inline).toMatch(/^CSR_INVALID: /);
    }
    expect(minter.inlineMints).toBe(cases.length);
  });

  it('send calls that arrive together to the workers even when lone calls are minted inline', async () => {
    const { minter } = await setup(2, true);
    const keys = await Promise.all(Array.from({ length: 20 }, () => newKeyWithCsr()));
    const minted = await Promise.all(keys.map((k, i) => minter.mintFromCsr({ csr: k.csr, spiffeId: `spiffe://${LTD}/t/${i}`, dnsNames: [], ttlSeconds: 300 })));
    expect(minter.inlineMints).toBe(0);
    minted.forEach((s, i) => expect(parseCertificate(s.chain[0]!).spkiDer.equals(keys[i]!.spki)).toBe(true));
  });

  it('send lone calls to the workers while the event loop has been busy, and inline again once it is calm', async () => {
    rig = await openLifecycleRig();
    const r = rig;
    const minter = new X509Minter({ authority: r.lifecycle.x509, clock: r.clock, backdateSeconds: 30, mintWorkers: 1 });
    minters.push(minter);
    const req = { csr: (await newKeyWithCsr()).csr, spiffeId: `spiffe://${LTD}/calm`, dnsNames: [], ttlSeconds: 300 };
    const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
    await sleep(400);
    await minter.mintFromCsr(req);
    expect(minter.inlineMints).toBe(1);
    // Block this event loop for 300 ms: the next window is all busy.
    const until = performance.now() + 300;
    while (performance.now() < until);
    const busy = await minter.mintFromCsr(req);
    expect(minter.inlineMints).toBe(1);
    await sleep(400);
    const calm = await minter.mintFromCsr(req);
    expect(minter.inlineMints).toBe(2);
    expect(fields(busy.chain[0]!)).toEqual(fields(calm.chain[0]!));
  });

  it('sign with a newly activated intermediate at once', async () => {
    const { rig: r, minter, roots } = await setup(2);
    const before = await minter.mintFromCsr({ csr: (await newKeyWithCsr()).csr, spiffeId: `spiffe://${LTD}/a`, dnsNames: [], ttlSeconds: 300 });
    const p = await r.lifecycle.prepare('x509-intermediate', { caller: 'test' });
    await r.lifecycle.activate('x509-intermediate', p.prepared.id, { caller: 'test' });
    const after = await minter.mintFromCsr({ csr: (await newKeyWithCsr()).csr, spiffeId: `spiffe://${LTD}/a`, dnsNames: [], ttlSeconds: 300 });
    expect(parseCertificate(before.chain[0]!).akiHex).not.toBe(p.prepared.id);
    expect(parseCertificate(after.chain[0]!).akiHex).toBe(p.prepared.id);
    expect(parseCertificate(after.chain[1]!).skiHex).toBe(p.prepared.id);
    expect(opensslVerify(r.dir, after.chain, roots(), r.clock.now())).toBe('');
  });

  it('fail only the calls a dying worker held, and replace it', async () => {
    rig = await openLifecycleRig();
    const dir = fs.mkdtempSync(path.join(rig.dir, 'w-'));
    // A worker that dies on its second job.
    const script = path.join(dir, 'dying-worker.mjs');
    fs.writeFileSync(
      script,
      `import { parentPort } from 'node:worker_threads';\nlet n = 0;\nparentPort.on('message', (job) => { if (++n === 2) process.exit(3); parentPort.postMessage({ id: job.id, results: job.items.map(() => ({ code: 'CSR_INVALID', message: 'test worker' })) }); });\n`,
    );
    const pool = new MintPool({ size: 1, script: pathToFileURL(script), backdateSeconds: 30 });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issuer = { skiHex: 'ab', certDer: Buffer.alloc(1), notAfterMs: 0, keyType: 'ec-p256' as const, privateKey, signer: localSigner('ec-p256', privateKey) };
    const item = { csr: Buffer.alloc(1), spiffeId: `spiffe://${LTD}/x`, dnsNames: [], ttlSeconds: 1, nowMs: 0 };
    expect(await pool.mint(issuer, item)).toEqual({ code: 'CSR_INVALID', message: 'test worker' });
    await expect(pool.mint(issuer, item)).rejects.toThrow(/mint worker exited with code 3/);
    expect(await pool.mint(issuer, item)).toEqual({ code: 'CSR_INVALID', message: 'test worker' });
    expect(pool.size).toBe(1);
    await pool.close();
    await expect(pool.mint(issuer, item)).rejects.toThrow(/closed/);
  });
});
