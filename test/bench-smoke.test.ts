/**
 * `npm run bench -- --quick` as a smoke test: the harness runs end to end
 * and reports every figure, and nothing it did failed. No speed thresholds:
 * CI machines are noisy, and figures are read from a bench run, not a test.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-bench-smoke-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const NUMBERS = [
  'raw_sign_per_s',
  'issuance_per_s',
  'issuance_ratio',
  'mint_p50_ms',
  'mint_p99_ms',
  'rpc_floor_p50_ms',
  'ssh_sign_per_s',
  'agent_rss_mb_10k',
  'rotation_storm_s',
  'rotation_storm_peak_per_s',
  'ca_rss_mb',
];
const ZERO = ['issuance_errors', 'mint_latency_errors', 'ssh_sign_errors', 'workload_fetch_errors', 'rotation_storm_ca_errors'];

describe('npm run bench -- --quick', () => {
  it('measures every figure side by side, with no failed call', async () => {
    const out = path.join(dir, 'bench.json');
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, 'dist/scripts/bench.js'), '--quick', '--json', out], { cwd: ROOT, timeout: 170_000, maxBuffer: 1 << 22 });
    console.log(stdout);
    const r = JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, unknown>;
    expect(r.mode).toBe('quick');
    for (const k of NUMBERS) {
      expect(typeof r[k], k).toBe('number');
      expect(r[k] as number, k).toBeGreaterThan(0);
    }
    for (const k of ZERO) expect(r[k], k).toBe(0);
    expect(Object.keys(r.issuance_by_batch_per_s as object)).toEqual(['batch_1', 'batch_10', 'batch_100']);
    for (const k of ['workload_fetch_p50_ms', 'workload_fetch_p99_ms']) expect(Object.keys(r[k] as object)).toEqual(['conn_1', 'conn_100', 'conn_1000']);
    expect(r.issuance_ratio as number).toBeCloseTo((r.issuance_per_s as number) / (r.raw_sign_per_s as number), 2);
    expect(stdout).toMatch(/^metric\s+value$/m);
  }, 180_000);
});
