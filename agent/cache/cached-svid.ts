/**
 * How the agent holds a minted SVID: compact, since an agent holds one per
 * entry (10,000 in the benchmark) for as long as it runs.
 *
 * Measured with 10,000 SVIDs (heap snapshots, README Performance), the
 * plain object this replaces cost about 2 KB of JavaScript heap and 1.9 KB
 * of buffers each: three Date objects, three Buffer views, a hidden class
 * of its own (built by object spread), and a copy of the intermediate
 * certificate in every SVID. Here:
 *
 * - times are numbers (ms since the epoch); the Date getters are for the
 *   rare reader, never for loops over every SVID;
 * - the leaf and the key's PKCS#8 of a whole batch are copied into one
 *   buffer (`packSvids`), each SVID holding a view of its leaf and the
 *   key's offset in the same buffer, so nothing else shares the memory
 *   and nothing of the gRPC response is kept alive;
 * - the certificates after the leaf are shared by every SVID issued under
 *   the same intermediate (`sharedIntermediates`).
 *
 * The chain array is built once per SVID and kept: its identity is what
 * agent/push/chain-ids.ts remembers parsed authority ids by.
 */

/** One minted SVID with its key, as handed to the cache. */
export interface SvidParts {
  readonly spiffeId: string;
  /** DER, leaf first. */
  readonly chain: readonly Uint8Array[];
  /** PKCS#8 DER. */
  readonly key: Uint8Array;
  /** Lower-case hex. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** When the agent should replace it (see agent/svid/rotation.ts). */
  readonly rotateAt: Date;
}

/** One minted SVID with its key, as held for an entry. Immutable. */
export class CachedSvid {
  readonly spiffeId: string;
  /** DER, leaf first; the same array every time. */
  readonly chain: readonly Buffer[];
  /** Lower-case hex. */
  readonly serial: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** When the agent should replace it (see agent/svid/rotation.ts). */
  readonly rotateAtMs: number;
  /** The key's PKCS#8 follows the leaf in the same memory; this is its length. */
  readonly #keyLength: number;

  /** Prefer `packSvids`, which lays out the memory as described above. */
  constructor(parts: Omit<SvidParts, 'chain' | 'key'>, chain: readonly Buffer[], keyLength: number) {
    this.spiffeId = parts.spiffeId;
    this.chain = chain;
    this.serial = parts.serial;
    this.notBeforeMs = parts.notBefore.getTime();
    this.notAfterMs = parts.notAfter.getTime();
    this.rotateAtMs = parts.rotateAt.getTime();
    this.#keyLength = keyLength;
  }

  /** PKCS#8 DER of the leaf's private key. */
  get key(): Buffer {
    const leaf = this.chain[0]!;
    return Buffer.from(leaf.buffer, leaf.byteOffset + leaf.length, this.#keyLength);
  }

  get notBefore(): Date {
    return new Date(this.notBeforeMs);
  }

  get notAfter(): Date {
    return new Date(this.notAfterMs);
  }

  get rotateAt(): Date {
    return new Date(this.rotateAtMs);
  }
}

/** Distinct intermediate chains remembered for sharing; a CA has one or two at a time (rotation). */
const SHARED_CHAINS_LIMIT = 8;
/** Most recently used first. */
const sharedChains: Buffer[][] = [];

/**
 * The certificates after the leaf, as one array of buffers shared by every
 * SVID with the same ones (compared byte for byte). Callers never mutate
 * what they get.
 */
export function sharedIntermediates(certs: readonly Uint8Array[]): readonly Buffer[] {
  if (certs.length === 0) return [];
  const i = sharedChains.findIndex((c) => c.length === certs.length && c.every((b, j) => b.equals(certs[j]!)));
  let chain: Buffer[];
  if (i >= 0) {
    chain = sharedChains[i]!;
    if (i > 0) sharedChains.splice(i, 1);
    else return chain;
  } else {
    chain = certs.map((c) => Buffer.from(c)); // copies: nothing of the caller's memory stays referenced
    if (sharedChains.length >= SHARED_CHAINS_LIMIT) sharedChains.pop();
  }
  sharedChains.unshift(chain);
  return chain;
}

/**
 * Largest number of SVIDs whose bytes share one buffer. A buffer lives
 * while any of its SVIDs does, and the SVIDs of one batch are replaced at
 * about the same time (their rotation points are a few seconds apart), so
 * little is held for nothing; a bound keeps that little small.
 */
export const SVIDS_PER_BUFFER = 64;

/** The SVIDs in the layout described at the top of this module, in order. */
export function packSvids(parts: readonly SvidParts[]): CachedSvid[] {
  const out: CachedSvid[] = [];
  for (let start = 0; start < parts.length; start += SVIDS_PER_BUFFER) {
    const group = parts.slice(start, start + SVIDS_PER_BUFFER);
    let size = 0;
    for (const p of group) {
      if (p.chain.length === 0) throw new Error('an SVID without a certificate');
      size += p.chain[0]!.length + p.key.length;
    }
    // Its own memory, not the shared pool of small buffers: only these SVIDs keep it alive.
    const memory = Buffer.allocUnsafeSlow(size);
    let offset = 0;
    for (const p of group) {
      const leafDer = p.chain[0]!;
      memory.set(leafDer, offset);
      memory.set(p.key, offset + leafDer.length);
      const leaf = memory.subarray(offset, offset + leafDer.length);
      offset += leafDer.length + p.key.length;
      out.push(new CachedSvid(p, [leaf, ...sharedIntermediates(p.chain.slice(1))], p.key.length));
    }
  }
  return out;
}
