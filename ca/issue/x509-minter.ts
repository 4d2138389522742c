/**
 * Mints X.509-SVIDs with the active intermediate, then checks what it
 * minted before anyone sees it (issueCheckedSvid). A certificate that fails
 * the check is never returned.
 *
 * Two paths, same result: `mint` (a key from an already-parsed CSR) signs on
 * libuv's thread pool (thread-pool-signer.ts); `mintFromCsr` hands the whole
 * CSR to the mint workers (mint-pool.ts) when there are any and the signing
 * key is local, else parses it here and takes `mint`.
 */
import type { Clock } from '../../spiffe/clock.js';
import type { CsrMintRequest, MintedSvid, MintRequest, SvidMinter } from '../api/context.js';
import type { X509Authority } from '../authority/x509-authority.js';
import { CaError } from '../errors.js';
import { parseCsrAsync } from '../x509/csr.js';
import { issueCheckedSvid } from './checked-leaf.js';
import { MintPool, mintWorkerScript, type PoolIssuer } from './mint-pool.js';
import { threadPoolSigner } from './thread-pool-signer.js';

export interface X509MinterDeps {
  authority: X509Authority;
  clock: Clock;
  backdateSeconds: number;
  /** Mint worker threads (0: mint on the event loop and libuv's pool only). */
  mintWorkers?: number;
  /** A lone mint finding every worker idle is minted in this thread (mint-pool.ts); default true. */
  inlineWhenIdle?: boolean;
  /** ...and only while the event loop was busy less than this share of the last window (default INLINE_MAX_LOOP_UTILIZATION). */
  inlineMaxLoopUtilization?: number;
}

export class X509Minter implements SvidMinter {
  readonly #pool: MintPool | undefined;
  /** The PoolIssuer of the current intermediate, rebuilt when it changes. */
  #poolIssuer: { for: unknown; issuer: PoolIssuer } | undefined;

  constructor(private readonly deps: X509MinterDeps) {
    const script = (deps.mintWorkers ?? 0) > 0 ? mintWorkerScript() : undefined;
    this.#pool = script ? new MintPool({ size: deps.mintWorkers!, script, backdateSeconds: deps.backdateSeconds, inlineWhenIdle: deps.inlineWhenIdle ?? true, ...(deps.inlineMaxLoopUtilization !== undefined ? { inlineMaxLoopUtilization: deps.inlineMaxLoopUtilization } : {}) }) : undefined;
  }

  /** Worker threads minting from CSRs (0 when minting in this thread). */
  get workers(): number {
    return this.#pool?.size ?? 0;
  }

  /** Mints from CSRs that the pool did in this thread because every worker was idle. */
  get inlineMints(): number {
    return this.#pool?.inlineMints ?? 0;
  }

  async mint(req: MintRequest): Promise<MintedSvid> {
    const issuer = this.deps.authority.signing();
    const leaf = await issueCheckedSvid({
      spiffeId: req.spiffeId,
      dnsNames: req.dnsNames,
      subjectPublicKey: req.publicKey,
      ...(req.subjectSpkiDer ? { subjectSpkiDer: req.subjectSpkiDer } : {}),
      issuer: { certDer: issuer.record.publicDer, signer: threadPoolSigner(issuer.signer), notAfter: issuer.notAfter, skiHex: issuer.record.id },
      ttlSeconds: req.ttlSeconds,
      now: this.deps.clock.now(),
      backdateSeconds: this.deps.backdateSeconds,
    });
    return { spiffeId: req.spiffeId, chain: [leaf.der, ...issuer.chain], serialHex: leaf.serialHex, notBefore: leaf.notBefore, notAfter: leaf.notAfter };
  }

  async mintFromCsr(req: CsrMintRequest): Promise<MintedSvid> {
    if (!this.#pool) {
      const csr = await parseCsrAsync(req.csr);
      return this.mint({ spiffeId: req.spiffeId, dnsNames: req.dnsNames, publicKey: csr.publicKey, subjectSpkiDer: csr.spkiDer, ttlSeconds: req.ttlSeconds });
    }
    const active = this.deps.authority.signing();
    if (this.#poolIssuer?.for !== active) {
      this.#poolIssuer = {
        for: active,
        issuer: {
          skiHex: active.record.id,
          certDer: active.record.publicDer,
          notAfterMs: active.notAfter.getTime(),
          keyType: active.signer.keyType,
          privateKey: active.signer.privateKeyObject,
          signer: active.signer,
        },
      };
    }
    const r = await this.#pool.mint(this.#poolIssuer.issuer, {
      csr: req.csr,
      spiffeId: req.spiffeId,
      dnsNames: req.dnsNames,
      ttlSeconds: req.ttlSeconds,
      nowMs: this.deps.clock.now().getTime(),
    });
    if ('code' in r) throw new CaError(r.code, r.message);
    if ('unexpected' in r) throw new Error(`mint worker: ${r.unexpected}`);
    const leaf = r.ok;
    return {
      spiffeId: req.spiffeId,
      chain: [Buffer.from(leaf.der.buffer, leaf.der.byteOffset, leaf.der.byteLength), ...active.chain],
      serialHex: leaf.serialHex,
      notBefore: new Date(leaf.notBeforeMs),
      notAfter: new Date(leaf.notAfterMs),
    };
  }

  /** Stops the mint workers. */
  async close(): Promise<void> {
    await this.#pool?.close();
  }
}
