/**
 * The audit trail on the admin socket: list records (with their hashes)
 * and verify the hash chain. Read-only.
 */
import type { AuditRecord as AuditRecordProto, AuditServiceServer } from '../../proto/gen/brevis/ca/v1/audit.js';
import type { ChainedAuditRecord } from '../audit/audit-hash.js';
import type { ReadChainOptions } from '../audit/sqlite-audit-chain.js';
import { verifyAuditChain } from '../audit/verify-chain.js';
import { CaError } from '../errors.js';
import { unary, type ErrorLogger } from './errors.js';

/** Largest page ListAudit returns. */
export const MAX_AUDIT_PAGE = 1000;

export interface AuditServiceDeps {
  /** Reads chained records, oldest first. */
  read(options: ReadChainOptions): Promise<ChainedAuditRecord[]>;
  logger: ErrorLogger;
}

export function auditRecordToProto(r: ChainedAuditRecord): AuditRecordProto {
  return {
    seq: r.seq,
    timeMs: r.timeMs,
    caller: r.caller,
    action: r.action,
    ...(r.spiffeId !== null ? { spiffeId: r.spiffeId } : {}),
    ...(r.serial !== null ? { serial: r.serial } : {}),
    ...(r.notAfter !== null ? { notAfter: r.notAfter } : {}),
    outcome: r.outcome,
    ...(r.detail !== null ? { detail: r.detail } : {}),
    prevHash: r.prevHash,
    hash: r.hash,
  };
}

export function createAuditService(deps: AuditServiceDeps): AuditServiceServer {
  return {
    listAudit: unary(async (req) => {
      if (req.sinceMs < 0 || req.afterSeq < 0 || req.limit < 0) throw new CaError('INVALID_ARGUMENT', 'since, after_seq and limit must not be negative');
      const limit = req.limit === 0 ? MAX_AUDIT_PAGE : Math.min(req.limit, MAX_AUDIT_PAGE);
      const records = await deps.read({
        ...(req.sinceMs > 0 ? { sinceMs: req.sinceMs } : {}),
        ...(req.afterSeq > 0 ? { afterSeq: req.afterSeq } : {}),
        limit,
      });
      return { records: records.map(auditRecordToProto) };
    }, deps.logger),

    verifyAudit: unary(async () => {
      const v = await verifyAuditChain((afterSeq, limit) => deps.read({ afterSeq, limit }));
      if (v.intact) return { intact: true, count: v.count, brokenSeq: 0, reason: '', headSeq: v.headSeq, headHash: v.headHash };
      deps.logger.warn({ brokenSeq: v.brokenSeq, reason: v.reason }, 'the audit hash chain is broken');
      return { intact: false, count: v.count, brokenSeq: v.brokenSeq, reason: v.reason, headSeq: 0, headHash: '' };
    }, deps.logger),
  };
}
