/**
 * A mint worker (worker_threads): the CPU-bound part of minting an SVID from
 * a CSR, off the CA's event loop. Per item: parse the CSR, import its key and
 * verify its signature, build the certificate, sign it with the intermediate
 * and check the result (issueCheckedSvid), exactly as X509Minter does in the
 * main thread. Signing keys arrive once per issuer and stay in this thread.
 */
import { sign as nodeSign } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { CaError } from '../errors.js';
import { KEY_ALGORITHMS, type KeyType } from '../keys/keytype.js';
import { parseCsr } from '../x509/csr.js';
import { keyFamilyOf } from '../x509/leaf.js';
import { issueCheckedSvid } from './checked-leaf.js';
import { WORKER_KEYS, pack, type MintFailure, type MintJob, type MintJobResult } from './mint-job.js';

interface Issuer {
  certDer: Uint8Array;
  signer: { keyType: KeyType; sign(data: Uint8Array): Promise<Uint8Array> };
}

const issuers = new Map<string, Issuer>();

function issuerFor(job: MintJob['issuer']): Issuer {
  let s = issuers.get(job.skiHex);
  if (!s) {
    if (!job.first) throw new Error(`mint worker: no key for issuer ${job.skiHex}`);
    const key = job.first.privateKey;
    const digest = KEY_ALGORITHMS[job.keyType].node.digest;
    s = { certDer: job.first.certDer, signer: { keyType: job.keyType, sign: (data) => Promise.resolve(nodeSign(digest, data, key)) } };
    issuers.set(job.skiHex, s);
    // Rotation retires intermediates: keep only the most recent keys, evicting as the pool expects.
    if (issuers.size > WORKER_KEYS) issuers.delete(issuers.keys().next().value!);
  }
  return s;
}

function failure(e: unknown): MintFailure {
  return e instanceof CaError ? { code: e.code, message: e.message } : { unexpected: e instanceof Error ? e.message : String(e) };
}

async function run(job: MintJob): Promise<{ result: MintJobResult; transfer: ArrayBuffer[] }> {
  const issuer = issuerFor(job.issuer);
  const ders: Uint8Array[] = [];
  const results: MintJobResult['results'] = [];
  let start = 0;
  for (let i = 0; i < job.items.length; i++) {
    const item = job.items[i]!;
    const csr = new Uint8Array(job.csrs, start, job.csrEnds[i]! - start);
    start = job.csrEnds[i]!;
    try {
      const parsed = parseCsr(csr);
      const leaf = await issueCheckedSvid({
        spiffeId: item.spiffeId,
        dnsNames: item.dnsNames,
        subjectKeyFamily: keyFamilyOf(parsed.keyType),
        subjectSpkiDer: parsed.spkiDer,
        issuer: { certDer: issuer.certDer, signer: issuer.signer, notAfter: new Date(job.issuer.notAfterMs), skiHex: job.issuer.skiHex },
        ttlSeconds: item.ttlSeconds,
        now: new Date(item.nowMs),
        backdateSeconds: job.backdateSeconds,
      });
      ders.push(leaf.der);
      results.push({ derEnd: -1, serialHex: leaf.serialHex, notBeforeMs: leaf.notBefore.getTime(), notAfterMs: leaf.notAfter.getTime() });
    } catch (e) {
      results.push(failure(e));
    }
  }
  const packed = pack(ders);
  let k = 0;
  for (const r of results) if ('derEnd' in r) r.derEnd = packed.ends[k++]!;
  return { result: { id: job.id, ders: packed.buffer, results }, transfer: [packed.buffer] };
}

const port = parentPort;
if (!port) throw new Error('mint-worker.js runs as a worker thread');
port.on('message', (job: MintJob) => {
  run(job).then(
    ({ result, transfer }) => port.postMessage(result, transfer),
    (e: unknown) => port.postMessage({ id: job.id, ders: new ArrayBuffer(0), results: job.items.map(() => failure(e)) } satisfies MintJobResult),
  );
});
