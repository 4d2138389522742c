/**
 * A mint worker (worker_threads): the CPU-bound part of minting an SVID from
 * a CSR, off the CA's event loop. Per item: parse the CSR, import its key and
 * verify its signature, build the certificate, sign it with the intermediate
 * and check the result (issueCheckedSvid), exactly as X509Minter does in the
 * main thread. Signing keys arrive once per issuer and stay in this thread.
 */
import { parentPort } from 'node:worker_threads';
import { localSigner, mintFailure, mintItem, type LocalIssuer } from './mint-item.js';
import { WORKER_KEYS, pack, type MintJob, type MintJobResult } from './mint-job.js';

const issuers = new Map<string, LocalIssuer>();

function issuerFor(job: MintJob['issuer']): LocalIssuer {
  let s = issuers.get(job.skiHex);
  if (!s) {
    if (!job.first) throw new Error(`mint worker: no key for issuer ${job.skiHex}`);
    s = { skiHex: job.skiHex, certDer: job.first.certDer, notAfterMs: job.notAfterMs, signer: localSigner(job.keyType, job.first.privateKey) };
    issuers.set(job.skiHex, s);
    // Rotation retires intermediates: keep only the most recent keys, evicting as the pool expects.
    if (issuers.size > WORKER_KEYS) issuers.delete(issuers.keys().next().value!);
  }
  return s;
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
      const leaf = await mintItem(issuer, item, csr, job.backdateSeconds);
      ders.push(leaf.der);
      results.push({ derEnd: -1, serialHex: leaf.serialHex, notBeforeMs: leaf.notBeforeMs, notAfterMs: leaf.notAfterMs });
    } catch (e) {
      results.push(mintFailure(e));
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
    (e: unknown) => port.postMessage({ id: job.id, ders: new ArrayBuffer(0), results: job.items.map(() => mintFailure(e)) } satisfies MintJobResult),
  );
});
