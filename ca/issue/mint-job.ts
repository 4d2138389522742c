/**
 * The messages between the CA's event loop and its mint workers
 * (mint-pool.ts, mint-worker.ts): plain data and node:crypto KeyObjects,
 * which postMessage clones. Errors travel as their CaError code and message.
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
  certDer: Uint8Array;
  notAfterMs: number;
  keyType: KeyType;
  /** Sent the first time a worker sees this issuer, then cached there. */
  privateKey?: KeyObject;
}

export interface MintJob {
  id: number;
  issuer: JobIssuer;
  backdateSeconds: number;
  items: CsrMintItem[];
}

export interface MintedLeaf {
  der: Uint8Array;
  serialHex: string;
  notBeforeMs: number;
  notAfterMs: number;
}

export type MintItemResult = { ok: MintedLeaf } | { code: CaErrorCode; message: string } | { unexpected: string };

export interface MintJobResult {
  id: number;
  results: MintItemResult[];
}
