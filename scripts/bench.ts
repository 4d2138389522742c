#!/usr/bin/env node
/**
 * `npm run bench [-- --quick] [-- --json FILE]`: measures Brevis side by side
 * with the physical limit (raw P-256 signing on one core) in one run, and
 * prints a table. See README "Performance" for what each figure means.
 */
import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { collectGarbage } from '../agent/memory/free-memory.js';
import { rawSignPerSecond } from './bench/raw-sign.js';
import { benchAgent, emptyUnary, newCsr, startBenchCa, unary, type BenchCa } from './bench/ca-process.js';
import { percentile, round, rssMbOf } from './bench/stats.js';
import type { NodeServiceClient } from '../proto/gen/brevis/ca/v1/node.js';
import { benchAgentSide } from './bench/agent-side.js';
import { sshSignPerSecond } from './bench/ssh-sign.js';
import { startFloorServers } from './bench/floor-servers.js';

interface Results {
  [k: string]: number | string | Record<string, number>;
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;
const SECONDS = quick ? 2 : 10;

function log(msg: string) {
  process.stderr.write(`bench: ${msg}\n`);
}

interface MintResponse {
  results: { statusCode: number; statusMessage: string }[];
}

/** Closed loop: `inflight` outstanding requests of `batch` SVIDs each, for `seconds`. */
async function issuance(clients: NodeServiceClient[], entryIds: string[], csrs: Buffer[], batch: number, inflight: number, seconds: number) {
  let minted = 0;
  let errors = 0;
  let i = 0;
  const deadline = Date.now() + seconds * 1000;
  const start = Date.now();
  const worker = async (w: number) => {
    const client = clients[w % clients.length]!;
    while (Date.now() < deadline) {
      const params = Array.from({ length: batch }, () => {
        i++;
        return { entryId: entryIds[i % entryIds.length]!, csr: csrs[i % csrs.length]! };
      });
      try {
        const res = await unary<MintResponse>(client, 'batchMintX509Svid', { params });
        for (const r of res.results) r.statusCode === 0 ? minted++ : errors++;
      } catch {
        errors += batch;
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, (_, w) => worker(w)));
  return { perSecond: minted / ((Date.now() - start) / 1000), errors };
}

/**
 * Open loop at a fixed offered rate of calls; latency of each. `call(n)`
 * settles with false for a refused call.
 *
 * The load generator stays lean so that its own pauses are not counted as
 * the CA's: latencies go into a preallocated typed array, settled calls are
 * not kept (keeping every call's promise grew this process's old
 * generation into full collections during the run), and the earlier
 * phases' garbage is collected before the loop starts when node runs with
 * --expose-gc (`npm run bench` does).
 */
async function latencyAt(call: (n: number) => Promise<boolean>, ratePerSecond: number, seconds: number) {
  const total = Math.max(50, Math.floor(ratePerSecond * seconds));
  const lat = new Float64Array(total);
  let samples = 0;
  let errors = 0;
  let outstanding = 0;
  let allSent = false;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const settle = () => {
    if (--outstanding === 0 && allSent) done();
  };
  collectGarbage();
  const interval = 1000 / ratePerSecond;
  const start = performance.now();
  for (let n = 0; n < total; n++) {
    const due = start + n * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const t0 = performance.now();
    outstanding++;
    call(n).then(
      (ok) => {
        if (!ok) errors++;
        lat[samples++] = performance.now() - t0;
        settle();
      },
      () => {
        errors++;
        settle();
      },
    );
  }
  allSent = true;
  if (outstanding > 0) await finished;
  const sorted = Array.from(lat.subarray(0, samples)).sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), errors, samples };
}

/** A gRPC health check on the CA's node API through `client`'s channel: the cheapest round trip there is. */
function healthCheck(client: NodeServiceClient): Promise<boolean> {
  return emptyUnary(client, '/grpc.health.v1.Health/Check');
}

async function main() {
  const results: Results = { date: new Date().toISOString(), mode: quick ? 'quick' : 'full', node: process.version };
  log(`raw signing for ${SECONDS}s`);
  results.raw_sign_per_s = round(rawSignPerSecond(SECONDS * 1000), 0);

  log('starting a CA process');
  const ca: BenchCa = await startBenchCa();
  try {
    const agent = await benchAgent(ca, quick ? 20 : 100, 4);
    const csrs = await Promise.all(Array.from({ length: 200 }, async () => (await newCsr()).csr));
    const byBatch: Record<string, number> = {};
    let errors = 0;
    for (const [batch, inflight] of [[1, 32], [10, 8], [100, 4]] as const) {
      log(`issuance, batches of ${batch}, ${inflight} in flight, ${SECONDS}s`);
      const r = await issuance(agent.clients, agent.entryIds, csrs, batch, inflight, SECONDS);
      byBatch[`batch_${batch}`] = round(r.perSecond, 0);
      errors += r.errors;
    }
    results.issuance_by_batch_per_s = byBatch;
    results.issuance_per_s = Math.max(...Object.values(byBatch));
    results.issuance_errors = errors;
    results.issuance_ratio = round((results.issuance_per_s as number) / (results.raw_sign_per_s as number), 3);

    const half = Math.max(10, byBatch.batch_1! / 2);
    log(`single-mint latency at ${round(half, 0)}/s offered`);
    const mintOne = (n: number) =>
      unary<MintResponse>(agent.client, 'batchMintX509Svid', { params: [{ entryId: agent.entryIds[n % agent.entryIds.length]!, csr: csrs[n % csrs.length]! }] }).then(
        (r) => r.results[0]!.statusCode === 0,
      );
    const l = await latencyAt(mintOne, half, quick ? 2 : 10);
    results.mint_offered_per_s = round(half, 0);
    results.mint_p50_ms = round(l.p50);
    results.mint_p99_ms = round(l.p99);
    results.mint_latency_errors = l.errors;
    // The same open loop with the cheapest call on the same connection: the floor this machine
    // puts under any round trip at that rate (process wake-ups, TLS, HTTP/2).
    log(`health-check latency at ${round(half, 0)}/s offered (the round-trip floor)`);
    const floor = await latencyAt(() => healthCheck(agent.client), half, quick ? 2 : 10);
    results.rpc_floor_p50_ms = round(floor.p50);
    results.rpc_floor_p99_ms = round(floor.p99);
    // Below that floor, the stack's own: a plain grpc-js no-op call (no TLS, no CA) and a raw TCP
    // echo, to another process at the same rate (bench/floor-servers.ts).
    const floors = await startFloorServers();
    try {
      log(`plain grpc-js no-op and raw TCP echo latency at ${round(half, 0)}/s offered (the stack's floors)`);
      const g = await latencyAt(() => floors.grpcNoop(), half, quick ? 2 : 10);
      results.grpc_js_floor_p50_ms = round(g.p50);
      results.grpc_js_floor_p99_ms = round(g.p99);
      const t = await latencyAt((n) => floors.tcpEcho(n), half, quick ? 2 : 10);
      results.tcp_floor_p50_ms = round(t.p50);
      results.tcp_floor_p99_ms = round(t.p99);
    } finally {
      await floors.stop();
    }

    log(`SSH user certificates through the node API, 32 in flight, ${SECONDS}s`);
    const ssh = await sshSignPerSecond(ca, agent, 32, SECONDS);
    results.ssh_sign_per_s = round(ssh.perSecond, 0);
    results.ssh_sign_errors = ssh.errors;

    Object.assign(results, await benchAgentSide({ ca, quick, log }));
    for (const c of agent.clients) c.close();
    results.ca_rss_mb = rssMbOf(ca.proc.pid!);
  } finally {
    await ca.stop();
  }

  printTable(results);
  if (quick) process.stdout.write('(quick mode: shorter runs, and the agent holds 1,000 entries instead of 10,000)\n');
  if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(results, null, 2)}\n`);
}

function printTable(r: Results) {
  const rows: [string, string][] = [];
  for (const [k, v] of Object.entries(r)) {
    if (typeof v === 'object') for (const [k2, v2] of Object.entries(v)) rows.push([`${k}.${k2}`, String(v2)]);
    else rows.push([k, String(v)]);
  }
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`${'metric'.padEnd(w)}  value\n${'-'.repeat(w)}  -----\n`);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}  ${v}\n`);
}

main().then(() => process.exit(0), (e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
