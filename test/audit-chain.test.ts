import { describe, expect, it } from 'vitest';
import { GENESIS_HASH, auditRecordHash, canonicalAuditBytes } from '../ca/audit/audit-hash.js';
import type { AuditRecord } from '../ca/store/store.js';

function rec(i: number, over: Partial<AuditRecord> = {}): AuditRecord {
  return {
    timeMs: 1_700_000_000_000 + i,
    caller: 'admin:local',
    action: 'x509.mint',
    spiffeId: `spiffe://example.org/w/${i}`,
    serial: i.toString(16),
    notAfter: 1_700_003_600,
    outcome: 'success',
    detail: i % 2 ? null : `entry e${i}`,
    ...over,
  };
}

describe('audit hash chain', () => {
  it('encodes records canonically: every field and the previous hash change the hash, and null differs from empty text', () => {
    const base = rec(1, { detail: null });
    const h = auditRecordHash(1, base, GENESIS_HASH);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(auditRecordHash(1, { ...base }, GENESIS_HASH)).toBe(h);
    expect(auditRecordHash(2, base, GENESIS_HASH)).not.toBe(h);
    expect(auditRecordHash(1, base, 'f'.repeat(64))).not.toBe(h);
    for (const k of ['timeMs', 'caller', 'action', 'spiffeId', 'serial', 'notAfter', 'outcome'] as const) {
      const v = base[k];
      const changed = { ...base, [k]: typeof v === 'number' ? v + 1 : `${v}x` } as AuditRecord;
      expect(auditRecordHash(1, changed, GENESIS_HASH), k).not.toBe(h);
    }
    expect(auditRecordHash(1, { ...base, detail: '' }, GENESIS_HASH)).not.toBe(h);
    // Field boundaries are length-prefixed: moving text from one field to the next changes the bytes.
    const a = canonicalAuditBytes(1, { ...base, caller: 'ab', action: 'c' }, GENESIS_HASH);
    const b = canonicalAuditBytes(1, { ...base, caller: 'a', action: 'bc' }, GENESIS_HASH);
    expect(a.equals(b)).toBe(false);
  });

  // How the chain is kept by each store (order, concurrency, tampering
  // detected, gaps, backfill) is in test/support/store-contract.ts.
});
