/**
 * Agent-side figures: Workload API fetch latency with 1, 100 and 1,000
 * workload connections, the rotation storm of one agent holding 10,000
 * entries (1,000 with --quick), and the agent's memory with all of them
 * cached. The agent is a separate process; the CA sees it as any agent.
 */
import path from 'node:path';
import type { BenchCa } from './ca-process.js';
import { startBenchAgentProcess } from './agent-process.js';
import { AuditReader, generations, wave, type Wave } from './rotation-storm.js';
import { round, rssMbOf } from './stats.js';
import { fetchLatency, waitForSvid } from './workload-fetch.js';

export type Figures = Record<string, number | string | Record<string, number>>;

export async function benchAgentSide(o: { ca: BenchCa; quick: boolean; log: (m: string) => void }): Promise<Figures> {
  const { ca, quick, log } = o;
  const entries = quick ? 1_000 : 10_000;
  // Renewal at half-life, +-10% jitter (the agent's defaults): the storm comes
  // about ttl/2 after the initial sync, spread over about ttl/10 plus that sync's own spread.
  const ttlSeconds = quick ? 30 : 60;
  const out: Figures = { agent_entries: entries };
  log(`agent with ${entries} entries${quick ? ' (quick mode: 1,000 instead of 10,000)' : ''}, SVID TTL ${ttlSeconds}s`);
  const agent = await startBenchAgentProcess(ca, { entries, ttlSeconds, log });
  const audit = await AuditReader.open(path.join(ca.dir, 'ca', 'brevis.db'));
  try {
    const waitWave = async (n: number, timeoutMs: number): Promise<Wave> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const w = wave(generations(await audit.mints(agent.agentId)), agent.entryIds, n);
        if (w) return w;
        if (Date.now() > deadline) throw new Error(`mint wave ${n} of the agent did not complete within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    await waitForSvid(agent.socketPath, 180_000);
    const initial = await waitWave(0, 60_000);
    out.agent_initial_sync_s = round(initial.seconds);
    log(`initial sync minted ${entries} SVIDs in ${initial.seconds.toFixed(1)}s`);
    // Memory with every SVID cached, before any workload connects: sampled each second for a
    // while, since the heap saws up and down between collections (each sync allocates a copy of
    // the entry list); the median and the highest sample.
    const rss: number[] = [];
    for (let i = 0; i < (quick ? 3 : 8); i++) {
      await new Promise((r) => setTimeout(r, 1000));
      rss.push(rssMbOf(agent.proc.pid!));
    }
    rss.sort((a, b) => a - b);
    out.agent_rss_mb_10k = rss[Math.floor(rss.length / 2)]!;
    out.agent_rss_mb_10k_max = rss[rss.length - 1]!;

    const p50: Record<string, number> = {};
    const p99: Record<string, number> = {};
    const burst: Record<string, number> = {};
    let fetchErrors = 0;
    for (const n of [1, 100, 1000]) {
      log(`Workload API fetches with ${n} connection${n > 1 ? 's' : ''}`);
      const r = await fetchLatency(agent.socketPath, n, quick ? 1 : 3);
      p50[`conn_${n}`] = round(r.p50, 3);
      p99[`conn_${n}`] = round(r.p99, 3);
      burst[`conn_${n}`] = round(r.burstMs, 1);
      fetchErrors += r.errors;
    }
    out.workload_fetch_p50_ms = p50;
    out.workload_fetch_p99_ms = p99;
    out.workload_fetch_burst_ms = burst;
    out.workload_fetch_errors = fetchErrors;

    const problemsBefore = ca.problems.length;
    const agentProblemsBefore = agent.problems.length;
    log(`waiting for the rotation storm (about ${Math.round(ttlSeconds / 2)}s after the initial sync)`);
    const storm = await waitWave(1, ttlSeconds * 2_000);
    const g = generations(await audit.mints(agent.agentId));
    out.rotation_storm_s = round(storm.seconds);
    out.rotation_storm_peak_per_s = storm.peakPerSecond;
    // Refusals in the audit log plus warnings and errors the CA logged while it ran.
    out.rotation_storm_ca_errors = g.failures + (ca.problems.length - problemsBefore);
    out.rotation_storm_agent_warnings = agent.problems.length - agentProblemsBefore;
    log(`storm: ${entries} renewals over ${storm.seconds.toFixed(1)}s, at most ${storm.peakPerSecond} in one second`);
    // After 1,000 workload connections and a full renewal.
    out.agent_rss_mb_after_storm = rssMbOf(agent.proc.pid!);
  } finally {
    await audit.close();
    await agent.stop();
  }
  return out;
}
