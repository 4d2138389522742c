/**
 * The messages between the CA's event loop and its mint workers
 * (mint-pool.ts, mint-worker.ts). Certificates and CSRs travel packed back
 * to back in one ArrayBuffer that is transferred, not cloned: a CSR decoded
 * from a request is a view into the whole request buffer, and structured
 * cloning a view copies all of its backing buffer. Signing keys are
 * node:crypto KeyObjects, which postMessage clones. Errors travel as their
 * CaError code and message.
 */
import type { KeyObject } from 'node:crypto';
import type { CaErrorCode } from '../errors.js';
import type { KeyType } from '../keys/keytype.js';

/** Signing keys a worker keeps (the active intermediate and a few before it), both sides evicting the oldest first. */
export const WORKER_KEYS = 4;

/** One SVID to mint from one CSR. */
export interface CsrMintItem {
  csr: Uint8Array;
  spiffeId: string;
  dnsNames: string[];
  ttlSeconds: number;
  nowMs: number;
}

/** The signing intermediate, as a worker needs it. */
export interface JobIssuer {
  /** The intermediate's SubjectKeyIdentifier, hex: also the worker's key cache key. */
  skiHex: string;
  notAfterMs: number;
  keyType: KeyType;
  /** The certificate and the key are sent the first time a worker sees this issuer, then cached there. */
  first?: { certDer: Uint8Array; privateKey: KeyObject };
}

export interface MintJob {
  id: number;
  issuer: JobIssuer;
  backdateSeconds: number;
  /** The items' CSRs back to back (transferred); item i's ends at csrEnds[i]. */
  csrs: ArrayBuffer;
  csrEnds: number[];
  items: Array<Omit<CsrMintItem, 'csr'>>;
}

export interface MintedLeaf {
  der: Uint8Array;
  serialHex: string;
  notBeforeMs: number;
  notAfterMs: number;
}

export type MintFailure = { code: CaErrorCode; message: string } | { unexpected: string };

export type MintItemResult = { ok: MintedLeaf } | MintFailure;

export interface MintJobResult {
  id: number;
  /** The minted certificates back to back (transferred). */
  ders: ArrayBuffer;
  /** Per item: where its certificate ends in `ders`, or why there is none. */
  results: Array<{ derEnd: number; serialHex: string; notBeforeMs: number; notAfterMs: number } | MintFailure>;
}

/** Copies `parts` back to back into one new ArrayBuffer; returns it with the end offset of each part. */
export function pack(parts: readonly Uint8Array[]): { buffer: ArrayBuffer; ends: number[] } {
  let total = 0;
  for (const p of parts) total += p.byteLength;
  const out = new Uint8Array(total);
  const ends: number[] = [];
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
    ends.push(at);
  }
  return { buffer: out.buffer, ends };
}
