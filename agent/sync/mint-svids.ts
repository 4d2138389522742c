/**
 * Minting workload SVIDs: a fresh key pair per entry, generated here (the
 * private keys never leave the node), CSRs sent in batches of at most
 * `maxBatch`, each answer checked before it is kept.
 */
import type { Entry } from '../../proto/gen/brevis/ca/v1/types.js';
import type { Clock } from '../../spiffe/clock.js';
import { packSvids, type CachedSvid, type SvidParts } from '../cache/cached-svid.js';
import type { RotationPolicy } from '../config/config.js';
import type { NodeApi } from '../node/node-api.js';
import { newKeyWithCsr } from '../svid/new-key.js';
import { randomJitterUnit, rotationPoint } from '../svid/rotation.js';
import { checkMinted } from './check-minted.js';
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
    const ids: string[] = [];
    const parts: SvidParts[] = [];
    results.forEach((r, j) => {
      const entry = chunk[j]!;
      const minted = checkMinted(r, entry, keys[j]!);
      // Clock skew (agent/svid/clock-skew.ts), without times so that a refusal repeated at every sync reads (and is logged) once.
      const checked = typeof minted === 'string' ? minted : (clockSkewProblem(minted.notBefore, minted.notAfter, obtainedAt, false) ?? minted);
      if (typeof checked === 'string') {
        out.failed.push({ entryId: entry.id, code: r.svid && r.statusCode === 0 ? -1 : r.statusCode, message: checked });
        return;
      }
      const rotateAt = rotationPoint({ ...checked, obtainedAt }, o.rotation, randomJitterUnit(o.random));
      ids.push(entry.id);
      parts.push({ ...checked, rotateAt });
    });
    const batch: MintOutcome['minted'] = packSvids(parts).map((svid, j) => ({ entryId: ids[j]!, svid }));
    out.minted.push(...batch);
    if (batch.length > 0) o.onBatch?.(batch);
  }
  return out;
}
