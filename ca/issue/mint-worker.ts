/**
 * A mint worker (worker_threads): the CPU-bound part of minting an SVID from
 * a CSR, off the CA's event loop. Per item: parse the CSR, import its key and
 * verify its signature, build the certificate, sign it with the intermediate
 * and check the result (issueCheckedSvid), exactly as X509Minter does in the
 * main thread. Signing keys arrive once per issuer and stay in this thread.
 */
import { sign as nodeSign, type KeyObject } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { CaError } from '../errors.js';
import { KEY_ALGORITHMS, type KeyType } from '../keys/keytype.js';
import { parseCsr } from '../x509/csr.js';
import { issueCheckedSvid } from './checked-leaf.js';
import { WORKER_KEYS, type MintItemResult, type MintJob, type MintJobResult } from './mint-job.js';

const keys = new Map<string, { keyType: KeyType; sign(data: Uint8Array): Promise<Uint8Array> }>();

function signerFor(issuer: MintJob['issuer']) {
  let s = keys.get(issuer.skiHex);
  if (!s) {
    if (!issuer.privateKey) throw new Error(`mint worker: no key for issuer ${issuer.skiHex}`);
    const key: KeyObject = issuer.privateKey;
    const digest = KEY_ALGORITHMS[issuer.keyType].node.digest;
    s = { keyType: issuer.keyType, sign: (data) => Promise.resolve(nodeSign(digest, data, key)) };
    keys.set(issuer.skiHex, s);
    // Rotation retires intermediates: keep only the most recent keys, evicting as the pool expects.
    if (keys.size > WORKER_KEYS) keys.delete(keys.keys().next().value!);
  }
  return s;
}

async function run(job: MintJob): Promise<MintJobResult> {
  const signer = signerFor(job.issuer);
  const results: MintItemResult[] = [];
  for (const item of job.items) {
    try {
      const csr = parseCsr(item.csr);
      const leaf = await issueCheckedSvid({
        spiffeId: item.spiffeId,
        dnsNames: item.dnsNames,
        subjectPublicKey: csr.publicKey,
        subjectSpkiDer: csr.spkiDer,
        issuer: { certDer: job.issuer.certDer, signer, notAfter: new Date(job.issuer.notAfterMs), skiHex: job.issuer.skiHex },
        ttlSeconds: item.ttlSeconds,
        now: new Date(item.nowMs),
        backdateSeconds: job.backdateSeconds,
      });
      results.push({ ok: { der: leaf.der, serialHex: leaf.serialHex, notBeforeMs: leaf.notBefore.getTime(), notAfterMs: leaf.notAfter.getTime() } });
    } catch (e) {
      results.push(e instanceof CaError ? { code: e.code, message: e.message } : { unexpected: e instanceof Error ? e.message : String(e) });
    }
  }
  return { id: job.id, results };
}

const port = parentPort;
if (!port) throw new Error('mint-worker.js runs as a worker thread');
port.on('message', (job: MintJob) => {
  run(job).then(
    (r) => port.postMessage(r),
    (e: unknown) => port.postMessage({ id: job.id, results: job.items.map(() => ({ unexpected: e instanceof Error ? e.message : String(e) })) } satisfies MintJobResult),
  );
});
