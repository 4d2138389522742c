/**
 * The agent hands freed native memory back to the kernel after large syncs
 * (agent/memory/free-memory.ts), and runs with a small V8 young generation
 * (agent/cli/node-flags.ts, the same flags as brevis-agent's shebang); the
 * CA's flags (ca/cli/node-flags.ts) match brevis-ca's shebang the same way.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../agent/cli/node-flags.js';
import { LARGE_SYNC_CHANGES, MemoryReleaser } from '../agent/memory/free-memory.js';
import { CA_NODE_FLAGS } from '../ca/cli/node-flags.js';
import { AGENT_BIN, CA_BIN, ROOT } from './support/processes.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('releasing free memory', () => {
  it('returns the pages of freed native blocks to the kernel (glibc malloc_trim)', () => {
    // 100,000 blocks of 2 KB, one in 32 kept: the free pages sit between live blocks,
    // where free() alone never returns them.
    const script = `
      import { releaseFreeMemory } from ${JSON.stringify(path.join(ROOT, 'dist/agent/memory/free-memory.js'))};
      const rss = () => process.memoryUsage.rss() / 1048576;
      const all = [];
      for (let i = 0; i < 100000; i++) all.push(Buffer.allocUnsafeSlow(2000));
      const keep = all.filter((_, i) => i % 32 === 0);
      all.length = 0;
      globalThis.gc();
      globalThis.gc();
      const before = rss();
      const released = releaseFreeMemory();
      console.log(JSON.stringify({ before, after: rss(), released, kept: keep.length }));
    `;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const { before, after, released, kept } = JSON.parse(r.stdout) as { before: number; after: number; released: boolean; kept: number };
    expect(kept).toBe(3125);
    expect(released).toBe(true);
    expect(before - after).toBeGreaterThan(100);
  });

  it('releases a few times after a large sync, not after small ones, and restarts the schedule at the next large one', async () => {
    const at: number[] = [];
    const steps: string[] = [];
    const t0 = performance.now();
    const m = new MemoryReleaser({
      release: () => {
        at.push(performance.now() - t0);
        steps.push('trim');
      },
      collect: () => steps.push('collect'),
      afterMs: [20, 60],
    });
    m.afterSync(LARGE_SYNC_CHANGES - 1);
    await sleep(100);
    expect(at).toEqual([]);
    m.afterSync(LARGE_SYNC_CHANGES);
    await sleep(30);
    m.afterSync(10_000); // restarts: the 60 ms release of the first schedule never runs
    await sleep(150);
    expect(at).toHaveLength(3);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(15);
    // Each schedule collects garbage once, at its first release, before trimming.
    expect(steps).toEqual(['collect', 'trim', 'collect', 'trim', 'trim']);
    m.afterSync(LARGE_SYNC_CHANGES);
    m.close();
    await sleep(100);
    expect(at).toHaveLength(3);
  });

  it('collects the garbage of many key pairs only when node runs with --expose-gc, and then hands their pages back', () => {
    // What a large sync leaves behind: thousands of key objects, whose OpenSSL keys live
    // outside V8's heap and are freed only when V8 collects their handles.
    const script = `
      import { generateKeyPairSync, createPrivateKey } from 'node:crypto';
      import { collectGarbage, releaseFreeMemory } from ${JSON.stringify(path.join(ROOT, 'dist/agent/memory/free-memory.js'))};
      const rss = () => process.memoryUsage.rss() / 1048576;
      let keys = [];
      for (let i = 0; i < 20000; i++) {
        const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } }).privateKey;
        keys.push(createPrivateKey({ key: jwk, format: 'jwk' }));
      }
      keys = null;
      const before = rss();
      const collected = collectGarbage();
      releaseFreeMemory();
      console.log(JSON.stringify({ collected, freedMb: before - rss() }));
    `;
    const run = (flags: string[]) => {
      const r = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout) as { collected: boolean; freedMb: number };
    };
    const exposed = run(AGENT_NODE_FLAGS as string[]);
    expect(exposed.collected).toBe(true);
    expect(exposed.freedMb).toBeGreaterThan(20);
    expect(run([]).collected).toBe(false);
  });

  it('never lets a failing release escape', async () => {
    let calls = 0;
    const m = new MemoryReleaser({
      release: () => {
        calls++;
        throw new Error('boom');
      },
      afterMs: [1, 2],
    });
    m.afterSync(LARGE_SYNC_CHANGES);
    await sleep(30);
    expect(calls).toBe(2);
  });
});

describe('the node flags of the programs', () => {
  it.each([
    { program: 'brevis-ca', source: 'ca/cli/main.ts', bin: CA_BIN, flags: CA_NODE_FLAGS },
    { program: 'brevis-agent', source: 'agent/cli/main.ts', bin: AGENT_BIN, flags: AGENT_NODE_FLAGS },
  ])('are the flags in the shebang of $program, and node accepts them', ({ program, source, bin, flags }) => {
    const shebang = readFileSync(path.join(ROOT, source), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${flags.join(' ')}`);
    expect(readFileSync(bin, 'utf8').split('\n')[0]).toBe(shebang);
    const r = spawnSync(process.execPath, [...flags, bin, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(program));
  });
});
