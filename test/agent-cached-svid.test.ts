import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SVIDS_PER_BUFFER, packSvids, sharedIntermediates, type SvidParts } from '../agent/cache/cached-svid.js';

const T0 = Date.parse('2030-01-01T00:00:00Z');

function parts(n: number, intermediates: Uint8Array[]): SvidParts[] {
  return Array.from({ length: n }, (_, i) => ({
    spiffeId: `spiffe://example.org/w/${i}`,
    // Views into one larger buffer, as protobuf decoding hands them out.
    chain: [Buffer.concat([randomBytes(16), randomBytes(600 + (i % 7))]).subarray(16), ...intermediates.map((c) => Buffer.from(c))],
    key: randomBytes(138),
    serial: `${i.toString(16)}ab`,
    notBefore: new Date(T0 - 30_000 + i),
    notAfter: new Date(T0 + 3_600_000 + i),
    rotateAt: new Date(T0 + 1_800_000 + i),
  }));
}

describe('the compact SVID the agent caches', () => {
  it('gives back exactly the bytes and times it was made from', () => {
    const inter = [randomBytes(550), randomBytes(520)];
    const input = parts(150, inter);
    const packed = packSvids(input);
    expect(packed).toHaveLength(150);
    packed.forEach((s, i) => {
      const p = input[i]!;
      expect(s.spiffeId).toBe(p.spiffeId);
      expect(s.serial).toBe(p.serial);
      expect(s.chain.map((c) => c.toString('hex'))).toEqual(p.chain.map((c) => Buffer.from(c).toString('hex')));
      expect(s.key.equals(p.key)).toBe(true);
      expect([s.notBeforeMs, s.notAfterMs, s.rotateAtMs]).toEqual([p.notBefore.getTime(), p.notAfter.getTime(), p.rotateAt.getTime()]);
      expect(s.notAfter).toEqual(p.notAfter);
      expect(s.notBefore).toEqual(p.notBefore);
      expect(s.rotateAt).toEqual(p.rotateAt);
      // The same chain array at every read (chain-ids remembers parsed ids by it).
      expect(s.chain).toBe(s.chain);
    });
  });

  it('keeps its own copy: changing what it was made from changes nothing', () => {
    const input = parts(3, [randomBytes(500)]);
    const before = packSvids(input).map((s) => [s.chain.map((c) => c.toString('hex')), s.key.toString('hex')]);
    const packed = packSvids(input);
    for (const p of input) {
      for (const c of p.chain) (c as Buffer).fill(0);
      (p.key as Buffer).fill(0);
    }
    expect(packed.map((s) => [s.chain.map((c) => c.toString('hex')), s.key.toString('hex')])).toEqual(before);
  });

  it('puts the leaves and keys of at most SVIDS_PER_BUFFER SVIDs in one memory of their own', () => {
    const packed = packSvids(parts(SVIDS_PER_BUFFER * 2 + 5, [randomBytes(500)]));
    const memories = new Set(packed.map((s) => s.chain[0]!.buffer));
    expect(memories.size).toBe(3);
    for (const m of memories) {
      const users = packed.filter((s) => s.chain[0]!.buffer === m);
      // Exactly the leaves and keys of its SVIDs: no pool shared with other allocations.
      expect(m.byteLength).toBe(users.reduce((n, s) => n + s.chain[0]!.length + s.key.length, 0));
    }
    for (const s of packed) expect(s.key.buffer).toBe(s.chain[0]!.buffer);
  });

  it('shares the certificates after the leaf among SVIDs with the same ones, compared byte for byte', () => {
    const a = [randomBytes(500)];
    const b = [randomBytes(500), randomBytes(480)];
    const packed = packSvids([...parts(3, a), ...parts(2, b), ...parts(2, a)]);
    const tails = packed.map((s) => s.chain.slice(1));
    expect(tails[0]![0]).toBe(tails[1]![0]);
    expect(tails[0]![0]).toBe(tails[6]![0]);
    expect(tails[3]![1]).toBe(tails[4]![1]);
    expect(tails[0]![0]).not.toBe(tails[3]![0]);
    expect(tails[3]!.map((c) => c.toString('hex'))).toEqual(b.map((c) => c.toString('hex')));
    // A different intermediate with the same length is not shared.
    const other = Buffer.from(a[0]!);
    other[10] ^= 1;
    expect(sharedIntermediates([other])[0]).not.toBe(tails[0]![0]);
    expect(sharedIntermediates([other])[0]!.equals(other)).toBe(true);
    expect(sharedIntermediates([])).toEqual([]);
  });

  it('refuses an SVID without a certificate', () => {
    const [p] = parts(1, []);
    expect(() => packSvids([{ ...p!, chain: [] }])).toThrow(/without a certificate/);
  });
});
