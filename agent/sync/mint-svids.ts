/**
 * Minting workload SVIDs: a fresh key pair per entry, generated here (the
 * private keys never leave the node), CSRs sent in batches of at most
 * `maxBatch`, each answer checked before it is kept.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { Entry } from '../../proto/gen/brevis/ca/v1/types.js';
import type { MintX509SVIDResult } from '../../proto/gen/brevis/ca/v1/node.js';
import type { Clock } from '../../spiffe/clock.js';
import type { CachedSvid } from '../cache/svid-cache.js';
import type { RotationPolicy } from '../config/config.js';
import type { NodeApi } from '../node/node-api.js';
import { uriSansOf } from '../node/server-identity.js';
import { newKeyWithCsr } from '../svid/new-key.js';
import { randomJitterUnit, rotationPoint } from '../svid/rotation.js';
import { clockSkewProblem } from '../svid/clock-skew.js';

/** Largest batch per BatchMintX509SVID call. */
export const MAX_MINT_BATCH = 500;

export interface MintFailure {
  entryId: string;
  /** gRPC status code from the CA, or -1 when the answer itself was unusable. */
  code: number;
  message: string;
}

export interface MintOutcome {
  minted: Array<{ entryId: string; svid: CachedSvid }>;
  failed: MintFailure[];
}

export interface MintOptions {
  api: NodeApi;
  clock: Clock;
  rotation: RotationPolicy;
  maxBatch?: number;
  random?: () => number;
  /** Called after each batch with what it minted, so SVIDs are served as soon as they exist. */
  onBatch?: (minted: MintOutcome['minted']) => void;
}

/**
 * Mints an SVID for each entry. Per-entry refusals are reported in
 * `failed`; a failed call (CA unreachable, ...) rejects with NodeApiError
 * after earlier batches were already handed to onBatch.
 */
export async function mintSvids(entries: readonly Entry[], o: MintOptions): Promise<MintOutcome> {
  const out: MintOutcome = { minted: [], failed: [] };
  const size = Math.max(1, Math.min(o.maxBatch ?? MAX_MINT_BATCH, MAX_MINT_BATCH));
  for (let i = 0; i < entries.length; i += size) {
    const chunk = entries.slice(i, i + size);
    const keys = await Promise.all(chunk.map(() => newKeyWithCsr()));
    const results = await o.api.batchMintX509Svid(chunk.map((e, j) => ({ entryId: e.id, csr: keys[j]!.csr })));
    const obtainedAt = o.clock.now();
    const batch: MintOutcome['minted'] = [];
    results.forEach((r, j) => {
      const entry = chunk[j]!;
      const checked = checkResult(r, entry, keys[j]!.pkcs8, obtainedAt);
      if (typeof checked === 'string') {
        out.failed.push({ entryId: entry.id, code: r.svid && r.statusCode === 0 ? -1 : r.statusCode, message: checked });
        return;
      }
      const rotateAt = rotationPoint({ ...checked, obtainedAt }, o.rotation, randomJitterUnit(o.random));
      batch.push({ entryId: entry.id, svid: { ...checked, rotateAt } });
    });
    out.minted.push(...batch);
    if (batch.length > 0) o.onBatch?.(batch);
  }
  return out;
}

/** The SVID without its rotation point, or why it cannot be used. */
function checkResult(r: MintX509SVIDResult, entry: Entry, pkcs8: Buffer, now: Date): Omit<CachedSvid, 'rotateAt'> | string {
  if (!r.svid || r.statusCode !== 0) return r.statusMessage || `refused with status ${r.statusCode}`;
  if (r.svid.certChain.length === 0) return 'the CA returned an empty chain';
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(r.svid.certChain[0]!);
  } catch {
    return 'the CA returned a certificate that cannot be parsed';
  }
  const uris = uriSansOf(leaf.subjectAltName);
  if (uris.length !== 1 || uris[0] !== entry.spiffeId) return `the certificate is not for ${entry.spiffeId}`;
  if (!leaf.checkPrivateKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }))) {
    return 'the certificate does not carry the key we generated';
  }
  // Without times, so that a refusal repeated at every sync reads (and is logged) once.
  const skew = clockSkewProblem(new Date(leaf.validFrom), new Date(leaf.validTo), now, false);
  if (skew) return skew;
  return {
    spiffeId: entry.spiffeId,
    chain: r.svid.certChain.map((c) => Buffer.from(c)),
    key: pkcs8,
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
  };
}
