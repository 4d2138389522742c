/**
 * Mint workers: a few worker threads that do the CPU-bound part of minting
 * SVIDs from CSRs (mint-worker.ts), so that a busy CA uses every core while
 * its event loop keeps serving gRPC, TLS and the store.
 *
 * Why threads and not only libuv's pool: importing the CSR's public key
 * (about 90 us for P-256 with OpenSSL 3, most of it the point validation)
 * and building and checking the certificate happen on the calling thread
 * whatever node:crypto API is used, and they were a third of the event
 * loop's time in profiles of batch minting (README "Performance").
 *
 * Calls made in the same tick are coalesced: one message per worker per
 * batch, split evenly across the least busy workers.
 *
 * A lone call that finds every worker idle, on an event loop that was
 * busy less than INLINE_MAX_LOOP_UTILIZATION of the last window, is minted
 * in the calling thread instead (with `inlineWhenIdle`, which the CA sets).
 * Handing one item to a sleeping worker costs two thread wake-ups, and on
 * the benchmark machine (a 2-vCPU VM) a wake-up costs about as much CPU as
 * the mint itself: at 700 single mints/s with every lone call inline the CA
 * used 0.76 cores instead of 0.93, and the mint step of a call took 0.28 ms
 * instead of 0.85 at the median. But the p99 of those calls did not improve,
 * and after long batch runs (the loop about half busy, lone calls inline
 * below 60% utilization) it leaned worse, 77 and 89 ms against 65 and 67
 * with every call sent to the workers: a mint done inline delays every other
 * call on the loop, where a worker runs it beside them. Hence the guard: a
 * quiet CA mints lone calls in place, a busy one keeps the loop free for
 * gRPC and spreads the minting over the workers; calls that arrive together
 * always go to the workers (README "Performance").
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import type { KeyType } from '../keys/keytype.js';
import { mintFailure, mintItem, type LocalIssuer } from './mint-item.js';
import { WORKER_KEYS, pack, type CsrMintItem, type MintedLeaf, type MintItemResult, type MintJob, type MintJobResult } from './mint-job.js';

/** The signing intermediate: its key goes to the workers, its signer serves the inline path (a LocalIssuer as it is). */
export interface PoolIssuer extends LocalIssuer {
  keyType: KeyType;
  privateKey: KeyObject;
}

interface Pending {
  item: CsrMintItem;
  issuer: PoolIssuer;
  resolve(r: MintItemResult): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  /** Items sent and not answered yet. */
  load: number;
  jobs: Map<number, Pending[]>;
  /** Issuers whose key this worker holds, oldest first (the worker evicts in the same order). */
  keys: Set<string>;
}

/** Lone calls are minted inline only while the event loop was busy less than this share of the last window. */
export const INLINE_MAX_LOOP_UTILIZATION = 0.3;
/** How often the event loop's utilization is sampled for that decision, ms. */
const LOOP_WINDOW_MS = 100;

/**
 * The compiled worker script: beside this module when running from dist/,
 * or dist/'s copy when this module runs from its TypeScript source (tests);
 * undefined when there is none (then the CA mints in its own thread).
 */
export function mintWorkerScript(): URL | undefined {
  const here = fileURLToPath(import.meta.url);
  const candidate = here.endsWith('.ts')
    ? path.resolve(path.dirname(here), '../../dist/ca/issue/mint-worker.js')
    : path.join(path.dirname(here), 'mint-worker.js');
  return existsSync(candidate) ? pathToFileURL(candidate) : undefined;
}

export class MintPool {
  readonly #slots: Slot[] = [];
  readonly #script: URL;
  readonly #backdateSeconds: number;
  readonly #inlineWhenIdle: boolean;
  readonly #inlineMaxLoopUtilization: number;
  #inlineMints = 0;
  #loopMark = performance.eventLoopUtilization();
  #loopMarkAt = performance.now();
  #loopUtilization = 0;
  #queue: Pending[] = [];
  #nextId = 1;
  #closed = false;

  constructor(opts: { size: number; script: URL; backdateSeconds: number; inlineWhenIdle?: boolean; inlineMaxLoopUtilization?: number }) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new TypeError('mint pool size must be a positive integer');
    this.#script = opts.script;
    this.#backdateSeconds = opts.backdateSeconds;
    this.#inlineWhenIdle = opts.inlineWhenIdle ?? false;
    this.#inlineMaxLoopUtilization = opts.inlineMaxLoopUtilization ?? INLINE_MAX_LOOP_UTILIZATION;
    for (let i = 0; i < opts.size; i++) this.#slots.push(this.#spawn());
  }

  get size(): number {
    return this.#slots.length;
  }

  /** How many items were minted in the calling thread (inlineWhenIdle). */
  get inlineMints(): number {
    return this.#inlineMints;
  }

  /** Mints one SVID from a CSR in a worker; CaErrors come back as results, not rejections. */
  mint(issuer: PoolIssuer, item: CsrMintItem): Promise<MintItemResult> {
    if (this.#closed) return Promise.reject(new Error('the mint pool is closed'));
    return new Promise((resolve, reject) => {
      if (this.#queue.length === 0) queueMicrotask(() => this.#flush());
      this.#queue.push({ item, issuer, resolve, reject });
    });
  }

  /** Stops the workers; calls still waiting are rejected. */
  async close(): Promise<void> {
    this.#closed = true;
    const slots = this.#slots.splice(0);
    await Promise.all(slots.map((s) => s.worker.terminate()));
    for (const s of slots) this.#failJobs(s, new Error('the mint pool was closed'));
  }

  #spawn(): Slot {
    const worker = new Worker(this.#script);
    const slot: Slot = { worker, load: 0, jobs: new Map(), keys: new Set() };
    worker.unref();
    worker.on('message', (r: MintJobResult) => this.#answer(slot, r));
    // A worker that dies (a bug, or out of memory) fails only what it held; a fresh one takes its place.
    const replace = (e: Error) => {
      const i = this.#slots.indexOf(slot);
      this.#failJobs(slot, e);
      if (i >= 0 && !this.#closed) this.#slots[i] = this.#spawn();
    };
    worker.on('error', (e) => replace(e));
    worker.on('exit', (code) => replace(new Error(`mint worker exited with code ${code}`)));
    return slot;
  }

  #failJobs(slot: Slot, e: Error) {
    for (const items of slot.jobs.values()) for (const p of items) p.reject(e);
    slot.jobs.clear();
    slot.load = 0;
  }

  #answer(slot: Slot, r: MintJobResult) {
    const items = slot.jobs.get(r.id);
    if (!items) return;
    slot.jobs.delete(r.id);
    slot.load -= items.length;
    let start = 0;
    for (let i = 0; i < items.length; i++) {
      const w = r.results[i];
      if (!w) items[i]!.resolve({ unexpected: 'mint worker gave no result' });
      else if ('derEnd' in w) {
        const der = new Uint8Array(r.ders, start, w.derEnd - start);
        start = w.derEnd;
        items[i]!.resolve({ ok: { der, serialHex: w.serialHex, notBeforeMs: w.notBeforeMs, notAfterMs: w.notAfterMs } });
      } else items[i]!.resolve(w);
    }
  }

  #flush() {
    const queue = this.#queue;
    this.#queue = [];
    if (this.#inlineWhenIdle && queue.length === 1 && this.#slots.every((s) => s.load === 0) && this.#loopIsCalm()) {
      this.#mintInline(queue[0]!);
      return;
    }
    // Nearly always one issuer per flush; a rotation between two calls makes two groups.
    const byIssuer = new Map<string, Pending[]>();
    for (const p of queue) {
      const g = byIssuer.get(p.issuer.skiHex);
      if (g) g.push(p);
      else byIssuer.set(p.issuer.skiHex, [p]);
    }
    for (const group of byIssuer.values()) {
      const parts = Math.min(this.#slots.length, group.length);
      const size = Math.ceil(group.length / parts);
      for (let start = 0; start < group.length; start += size) this.#send(group.slice(start, start + size));
    }
  }

  /** Whether this thread's event loop was busy less than the inline threshold over the last window. */
  #loopIsCalm(): boolean {
    const now = performance.now();
    if (now - this.#loopMarkAt >= LOOP_WINDOW_MS) {
      const mark = performance.eventLoopUtilization();
      this.#loopUtilization = performance.eventLoopUtilization(mark, this.#loopMark).utilization;
      this.#loopMark = mark;
      this.#loopMarkAt = now;
    }
    return this.#loopUtilization < this.#inlineMaxLoopUtilization;
  }

  #mintInline(p: Pending) {
    this.#inlineMints++;
    mintItem(p.issuer, p.item, p.item.csr, this.#backdateSeconds).then(
      (ok) => p.resolve({ ok }),
      (e: unknown) => p.resolve(mintFailure(e)),
    );
  }

  #send(items: Pending[]) {
    const slot = this.#slots.reduce((a, b) => (b.load < a.load ? b : a));
    const issuer = items[0]!.issuer;
    const known = slot.keys.has(issuer.skiHex);
    const csrs = pack(items.map((p) => p.item.csr));
    const job: MintJob = {
      id: this.#nextId++,
      issuer: {
        skiHex: issuer.skiHex,
        notAfterMs: issuer.notAfterMs,
        keyType: issuer.keyType,
        ...(known ? {} : { first: { certDer: issuer.certDer, privateKey: issuer.privateKey } }),
      },
      backdateSeconds: this.#backdateSeconds,
      csrs: csrs.buffer,
      csrEnds: csrs.ends,
      items: items.map(({ item }) => ({ spiffeId: item.spiffeId, dnsNames: item.dnsNames, ttlSeconds: item.ttlSeconds, nowMs: item.nowMs })),
    };
    if (!known) {
      slot.keys.add(issuer.skiHex);
      if (slot.keys.size > WORKER_KEYS) slot.keys.delete(slot.keys.values().next().value!);
    }
    slot.jobs.set(job.id, items);
    slot.load += items.length;
    slot.worker.postMessage(job, [csrs.buffer]);
  }
}

export type { MintedLeaf };
