#!/usr/bin/env node
/**
 * `npm run build && node dist/scripts/loadtest.js [--minutes N] [--measure-seconds S] [--batch B] [--json FILE]`
 *
 * A soak test, not a CI test: starts a CA process, measures its maximum
 * issuance rate (closed loop, S seconds), then offers half of it (open loop,
 * batches of B SVIDs on a fixed schedule) for N minutes (default 10), and
 * reports every minute and at the end: SVIDs issued, errors, latency and
 * the CA's resident memory. The CA runs with its rate limits off (its
 * config is the benchmark's): this measures capacity and stability, not
 * the limits. Exit status 1 when any call failed or memory kept growing.
 */
import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { benchAgent, newCsr, startBenchCa, unary } from './bench/ca-process.js';
import { percentile, round, rssMbOf } from './bench/stats.js';
import type { NodeServiceClient } from '../proto/gen/brevis/ca/v1/node.js';

interface MintResponse {
  results: Array<{ statusCode: number; statusMessage: string }>;
}

function flag(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : def;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
}

const MINUTES = flag('minutes', 10);
const MEASURE_S = flag('measure-seconds', 10);
const BATCH = flag('batch', 10);
const jsonAt = process.argv.indexOf('--json');
const JSON_OUT = jsonAt >= 0 ? process.argv[jsonAt + 1] : undefined;

const log = (msg: string) => process.stderr.write(`loadtest: ${msg}\n`);

/** Closed loop: `inflight` outstanding batches for `seconds`; SVIDs per second. */
async function measureMax(clients: NodeServiceClient[], entryIds: string[], csrs: Buffer[], seconds: number): Promise<number> {
  let minted = 0;
  let i = 0;
  const deadline = Date.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      while (Date.now() < deadline) {
        const params = Array.from({ length: BATCH }, () => ({ entryId: entryIds[++i % entryIds.length]!, csr: csrs[i % csrs.length]! }));
        const res = await unary<MintResponse>(clients[w % clients.length]!, 'batchMintX509Svid', { params });
        minted += res.results.filter((r) => r.statusCode === 0).length;
      }
    }),
  );
  return minted / ((performance.now() - start) / 1000);
}

interface Minute {
  minute: number;
  issued: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  rssMb: number;
}

async function main(): Promise<number> {
  log('starting a CA process');
  const ca = await startBenchCa();
  try {
    const agent = await benchAgent(ca, 200, 4);
    const csrs = await Promise.all(Array.from({ length: 200 }, async () => (await newCsr()).csr));
    log(`measuring the maximum issuance rate for ${MEASURE_S} s (batches of ${BATCH}, 8 in flight)`);
    const max = await measureMax(agent.clients, agent.entryIds, csrs, MEASURE_S);
    const target = max / 2;
    const interval = (BATCH / target) * 1000;
    log(`maximum ${round(max, 0)} SVIDs/s; holding ${round(target, 0)}/s (a batch of ${BATCH} every ${round(interval, 1)} ms) for ${MINUTES} min`);

    const minutes: Minute[] = [];
    const errorsSeen = new Map<string, number>();
    let cur = { issued: 0, errors: 0, lat: [] as number[] };
    let n = 0;
    const start = performance.now();
    const end = start + MINUTES * 60_000;
    let nextReport = start + 60_000;
    const pending = new Set<Promise<void>>();
    const rss0 = rssMbOf(ca.proc.pid!);
    while (performance.now() < end) {
      const due = start + n * interval;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const k = n++;
      const params = Array.from({ length: BATCH }, (_, j) => ({ entryId: agent.entryIds[(k * BATCH + j) % agent.entryIds.length]!, csr: csrs[(k * BATCH + j) % csrs.length]! }));
      const bucket = cur;
      const t0 = performance.now();
      const p = unary<MintResponse>(agent.clients[k % agent.clients.length]!, 'batchMintX509Svid', { params }, 30_000).then(
        (res) => {
          bucket.lat.push(performance.now() - t0);
          for (const r of res.results) {
            if (r.statusCode === 0) bucket.issued++;
            else {
              bucket.errors++;
              errorsSeen.set(r.statusMessage, (errorsSeen.get(r.statusMessage) ?? 0) + 1);
            }
          }
        },
        (e: Error) => {
          bucket.errors += BATCH;
          errorsSeen.set(e.message, (errorsSeen.get(e.message) ?? 0) + 1);
        },
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
      if (performance.now() >= nextReport) {
        nextReport += 60_000;
        const lat = cur.lat.sort((a, b) => a - b);
        const m: Minute = { minute: minutes.length + 1, issued: cur.issued, errors: cur.errors, p50Ms: round(percentile(lat, 50)), p99Ms: round(percentile(lat, 99)), rssMb: rssMbOf(ca.proc.pid!) };
        minutes.push(m);
        log(`minute ${m.minute}: ${m.issued} issued (${round(m.issued / 60, 0)}/s), ${m.errors} errors, p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms, CA RSS ${m.rssMb} MiB, ${pending.size} in flight`);
        cur = { issued: 0, errors: 0, lat: [] };
      }
    }
    await Promise.all(pending);
    const issued = minutes.reduce((a, m) => a + m.issued, 0) + cur.issued;
    const errors = minutes.reduce((a, m) => a + m.errors, 0) + cur.errors;
    const rss = minutes.map((m) => m.rssMb);
    // Flat: the second half of the run does not sit higher than the first half's peak by more than 10%.
    const half = Math.ceil(rss.length / 2);
    const firstPeak = Math.max(rss0, ...rss.slice(0, half));
    const secondPeak = Math.max(...rss.slice(half), 0);
    const flat = rss.length < 2 || secondPeak <= firstPeak * 1.1;
    const summary = {
      date: new Date().toISOString(),
      node: process.version,
      max_issuance_per_s: round(max, 0),
      offered_per_s: round(target, 0),
      minutes: MINUTES,
      achieved_per_s: round(issued / ((performance.now() - start) / 1000), 0),
      issued,
      errors,
      error_kinds: Object.fromEntries(errorsSeen),
      ca_rss_mb_start: rss0,
      ca_rss_mb_end: rss.at(-1) ?? rss0,
      ca_rss_mb_max: Math.max(rss0, ...rss),
      memory_flat: flat,
      per_minute: minutes,
      ca_warnings: ca.problems.length,
    };
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    if (JSON_OUT) writeFileSync(JSON_OUT, `${JSON.stringify(summary, null, 2)}\n`);
    for (const c of agent.clients) c.close();
    return errors === 0 && flat ? 0 : 1;
  } finally {
    await ca.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`loadtest: ${e.message}\n`);
    process.exit(1);
  },
);
