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

  it('keeps the canonical encoding fixed: the same bytes and hashes as when the chain format was defined', () => {
    // Golden values: stored chains are verified against these bytes forever (a change needs a new version tag).
    const cases: Array<[number, AuditRecord, string, string]> = [
      [
        1,
        { timeMs: 1_700_000_000_123, caller: 'spiffe://example.org/brevis/agent/join_token/ab', action: 'x509.mint', spiffeId: 'spiffe://example.org/svc/\u00e9\u2603', serial: '0a1b', notAfter: 1_700_003_600, outcome: 'success', detail: 'entry 42' },
        GENESIS_HASH,
        '1b608a203239c1edf7a2b39512c954824e00c5c1ac4e846829e44d44e2b20f1b',
      ],
      [2, { timeMs: 0, caller: '', action: 'a', spiffeId: null, serial: null, notAfter: null, outcome: 'failure', detail: null }, 'f'.repeat(64), 'cc1f43e537c7cbfd5966f1dd90d94cae39f8bdd1bd9707ccf8fc3326c13a8dea'],
      [
        Number.MAX_SAFE_INTEGER,
        { timeMs: -5, caller: 'c\u0000d', action: '\u{1d11e}', spiffeId: '', serial: '', notAfter: 0, outcome: 'success', detail: 'x'.repeat(300) },
        'ab'.repeat(32),
        '35cba74ff014114a7c88b494698aaa9dea5de542067e8559f4596d69443faaef',
      ],
    ];
    for (const [seq, r, prev, hash] of cases) expect(auditRecordHash(seq, r, prev)).toBe(hash);
    // The layout itself, for the null-only record: tag, then type byte, 4-byte length, bytes.
    const bytes = canonicalAuditBytes(2, cases[1]![1], 'f'.repeat(64));
    expect(bytes.subarray(0, 15).toString('ascii')).toBe('brevis-audit-v1');
    expect(bytes.subarray(15, 21).toString('hex')).toBe('010000000132'); // seq 2: integer, length 1, '2'
    expect(bytes.subarray(21, 27).toString('hex')).toBe('010000000130'); // timeMs 0
    expect(bytes.subarray(27, 32).toString('hex')).toBe('0200000000'); // caller '': text, length 0
    expect(bytes.length).toBe(139);
    expect(() => auditRecordHash(1, { ...cases[1]![1], timeMs: 2 ** 53 }, GENESIS_HASH)).toThrow(/not a safe integer/);
  });

  // How the chain is kept by each store (order, concurrency, tampering
  // detected, gaps, backfill) is in test/support/store-contract.ts.
});
