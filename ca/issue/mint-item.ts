/**
 * One SVID minted from a CSR with a signing key held in this thread, start
 * to finish: parse the CSR, import its key and verify its signature, build
 * the certificate, sign it and check the result (issueCheckedSvid), exactly
 * as X509Minter does on its other path. The mint workers run it for every
 * item of a job (mint-worker.ts); the pool runs it in the CA's own thread
 * for a lone call when every worker is idle (mint-pool.ts).
 */
import { sign as nodeSign, type KeyObject } from 'node:crypto';
import { CaError } from '../errors.js';
import { KEY_ALGORITHMS, type KeyType } from '../keys/keytype.js';
import { parseCsr } from '../x509/csr.js';
import { keyFamilyOf } from '../x509/leaf.js';
import { issueCheckedSvid } from './checked-leaf.js';
import type { CsrMintItem, MintFailure, MintedLeaf } from './mint-job.js';

export interface LocalIssuer {
  skiHex: string;
  certDer: Uint8Array;
  notAfterMs: number;
  signer: { keyType: KeyType; sign(data: Uint8Array): Promise<Uint8Array> };
}

/** A signer over a private key of this thread: node:crypto, synchronously (a P-256 signature is about 25 us). */
export function localSigner(keyType: KeyType, privateKey: KeyObject): LocalIssuer['signer'] {
  const digest = KEY_ALGORITHMS[keyType].node.digest;
  return { keyType, sign: (data) => Promise.resolve(nodeSign(digest, data, privateKey)) };
}

/** Mints `item`; a refused CSR rejects with its CaError. */
export async function mintItem(issuer: LocalIssuer, item: Omit<CsrMintItem, 'csr'>, csr: Uint8Array, backdateSeconds: number): Promise<MintedLeaf> {
  const parsed = parseCsr(csr);
  const leaf = await issueCheckedSvid({
    spiffeId: item.spiffeId,
    dnsNames: item.dnsNames,
    subjectKeyFamily: keyFamilyOf(parsed.keyType),
    subjectSpkiDer: parsed.spkiDer,
    issuer: { certDer: issuer.certDer, signer: issuer.signer, notAfter: new Date(issuer.notAfterMs), skiHex: issuer.skiHex },
    ttlSeconds: item.ttlSeconds,
    now: new Date(item.nowMs),
    backdateSeconds,
  });
  return { der: leaf.der, serialHex: leaf.serialHex, notBeforeMs: leaf.notBefore.getTime(), notAfterMs: leaf.notAfter.getTime() };
}

/** A mint error as it travels between threads: its CaError code and message, or what went wrong. */
export function mintFailure(e: unknown): MintFailure {
  return e instanceof CaError ? { code: e.code, message: e.message } : { unexpected: e instanceof Error ? e.message : String(e) };
}
