/**
 * Verifies the audit hash chain, page by page so that a long trail never
 * sits in memory at once.
 */
import { GENESIS_HASH, auditRecordHash, type ChainedAuditRecord } from './audit-hash.js';

export type AuditChainVerdict =
  | { intact: true; count: number; headSeq: number; headHash: string }
  | { intact: false; count: number; brokenSeq: number; reason: string };

/** Reads records with seq greater than `afterSeq`, oldest first, at most `limit`. */
export type ChainPageReader = (afterSeq: number, limit: number) => Promise<ChainedAuditRecord[]>;

const PAGE = 5000;

/**
 * Walks the whole chain. `count` is the number of records checked and
 * found intact before the first broken one. A record is broken when its
 * `prevHash` is not the previous record's hash (a record before it was
 * deleted, inserted or moved) or its hash does not match its contents (it
 * was edited, or moved to another position).
 */
export async function verifyAuditChain(read: ChainPageReader): Promise<AuditChainVerdict> {
  let prevHash = GENESIS_HASH;
  let prevSeq = 0;
  let count = 0;
  for (;;) {
    const page = await read(prevSeq, PAGE);
    for (const r of page) {
      const broken = (reason: string): AuditChainVerdict => ({ intact: false, count, brokenSeq: r.seq, reason });
      if (!r.hash) return broken('the record carries no hash (it was written outside the chain)');
      if (r.prevHash !== prevHash) {
        const gap = r.seq !== prevSeq + 1 ? `; records ${prevSeq + 1}..${r.seq - 1} are missing` : '';
        return broken(
          `its previous-record hash does not match record ${prevSeq === 0 ? '(genesis)' : prevSeq}: a record before it was deleted, inserted or reordered${gap}`,
        );
      }
      // Sequence numbers are handed out without gaps (a rolled-back append
      // rolls back its number too): a gap means the newest records were
      // deleted and the chain continued from what was left.
      if (r.seq !== prevSeq + 1) return broken(`records ${prevSeq + 1}..${r.seq - 1} are missing (deleted)`);
      if (auditRecordHash(r.seq, r, r.prevHash) !== r.hash) {
        return broken('its contents do not match its hash: the record was edited or moved');
      }
      prevHash = r.hash;
      prevSeq = r.seq;
      count++;
    }
    if (page.length < PAGE) return { intact: true, count, headSeq: prevSeq, headHash: prevHash };
  }
}
