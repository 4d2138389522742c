/**
 * A fleet of agents while the CA is unreachable for several sync intervals,
 * then back on the same port and data: every workload keeps its valid SVIDs,
 * every agent syncs again, and the agents do not stampede the returning CA.
 *
 * Requests are counted where the CA counts them: its Prometheus registry
 * (`brevis_ca_grpc_server_handled_total`, fed by the gRPC edge interceptor,
 * per node API method) and, for the WatchChanges streams that stay open and
 * so are counted only when they end, the change hub's open streams. An
 * agent's return is the "reached the CA again" line its sync loop logs.
 */
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { DEFAULT_BACKOFF } from '../agent/sync/backoff.js';
import { startTestCa, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, waitFor } from './support/agent-harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const AGENTS = 16;
const SYNC_INTERVAL_S = 2;
/** Five sync intervals; long enough that every retry loop is in its 8 s backoff step (or later) when the CA returns (see below). */
const OUTAGE_MS = 10_000;
const STEADY_S = 6;
/** The recovery window is at least this long, and lasts until every agent is back with its change stream open, plus 2 s. */
const AFTER_MIN_S = 10;
/** Workload SVIDs far from rotation (half-life 300 s): what the CA sees after it returns is the agents' return, not renewals. */
const SVID_TTL_S = 600;
const WORKLOAD_SELECTORS = ['unix:uid:1000', 'unix:uid:1001'];

const NODE_SERVICE = 'brevis.ca.v1.NodeService';
const STREAMS = 'WatchChanges (opened)';

/*
 * The bounds, from the design (agent/sync/backoff.ts, agent/push/change-watcher.ts,
 * agent/node/channel.ts), with the default backoff: 1 s doubling to 30 s,
 * equal jitter (half of each step fixed, half random).
 *
 * Spread. Each agent has two retry loops, the sync loop and the change
 * stream, both on this backoff. After k failed attempts a loop has waited
 * at least half of each step, (2^(k-1) - 1) / 2 s, so at most 3 steps
 * (1 + 2 + 4 = 7 s at most) fit in a 10 s outage: when the CA returns, each
 * loop is in its 8 s step or a later one, whose random half is at least 4 s
 * wide. The agents' first attempts after the return are thus spread over at
 * least 4 s: a quarter of the fleet per second on average. We allow twice
 * that, half of the fleet, in any one second (binomial spread of 16 agents,
 * timers bunched by a busy event loop); a stampede is the whole fleet.
 *
 * Rate. In steady state each agent fetches once per interval: N / I per
 * second. An agent's return costs at most 3 requests beyond its polling in
 * any one second: the retry's sync, the stream reopened, and the sync the
 * stream's first notice triggers. With at most N / 2 agents returning in one
 * second, the peak is at most N / I + 3 N / 2, i.e. 1 + 1.5 I times the
 * steady rate: 4 for I = 2 s. The whole fleet returning in one second would
 * be 3 I = 6 times, or 2 I = 4 when every stream came first and its
 * notice's sync was the agent's only one: at the bound, which is why the
 * share of the fleet returning (and reopening its stream) in any one second
 * is checked as well.
 *
 * Recovery time. A loop's next attempt after the return comes within its
 * current step, at most 16 s (2 s less than twice the outage, rounded down
 * to a step). grpc-js reconnects the channel within its own backoff (at most
 * 5 s, jitter 20%: 6 s); an attempt made before that fails and the next one
 * comes within the capped step, 30 s. So every agent is back within 36 s.
 */
const EXTRA_REQUESTS_PER_RETURN = 3;
const MAX_FLEET_SHARE_PER_SECOND = 0.5;
const RATIO_BOUND = 1 + EXTRA_REQUESTS_PER_RETURN * MAX_FLEET_SHARE_PER_SECOND * SYNC_INTERVAL_S;
const RECOVERY_BOUND_MS = 6_000 + DEFAULT_BACKOFF.maxMs;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

type Arrival = { at: number; rpc: string; n: number };

/** Samples the CA's counters every 100 ms and records what arrived since the last sample. */
class RequestCounter {
  readonly arrivals: Arrival[] = [];
  #ca: TestCa | null = null;
  #epoch = 0;
  #handled = new Map<string, number>();
  #streams = 0;
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor() {
    this.#loop = this.#run();
  }

  /** Counts from this CA from now on (a returned CA starts from zero); null while it is down. */
  watch(t: TestCa | null): void {
    this.#ca = t;
    this.#epoch++;
    this.#handled = new Map();
    this.#streams = 0;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      await this.#sample();
      await sleep(100);
    }
  }

  async #sample(): Promise<void> {
    const t = this.#ca;
    const epoch = this.#epoch;
    if (!t) return;
    const metric = t.ca.metrics.registry.getSingleMetric('brevis_ca_grpc_server_handled_total');
    const values = metric ? (await metric.get()).values : [];
    if (epoch !== this.#epoch) return;
    const at = Date.now();
    const totals = new Map<string, number>();
    for (const v of values) {
      const method = String(v.labels.grpc_method);
      // Streams are counted when they end; their opening is read from the hub below.
      if (v.labels.grpc_service !== NODE_SERVICE || method === 'WatchChanges') continue;
      totals.set(method, (totals.get(method) ?? 0) + v.value);
    }
    for (const [rpc, total] of totals) {
      const n = total - (this.#handled.get(rpc) ?? 0);
      if (n > 0) this.arrivals.push({ at, rpc, n });
      this.#handled.set(rpc, total);
    }
    const open = t.ca.push.hub.subscribers;
    if (open > this.#streams) this.arrivals.push({ at, rpc: STREAMS, n: open - this.#streams });
    this.#streams = open;
  }
}

/** Requests per method in each whole second from `from`. */
function perSecond(arrivals: Arrival[], from: number, seconds: number): Array<Map<string, number>> {
  const bins = Array.from({ length: seconds }, () => new Map<string, number>());
  for (const a of arrivals) {
    const i = Math.floor((a.at - from) / 1000);
    if (i < 0 || i >= seconds) continue;
    bins[i]!.set(a.rpc, (bins[i]!.get(a.rpc) ?? 0) + a.n);
  }
  return bins;
}

const total = (bin: Map<string, number>) => [...bin.values()].reduce((a, b) => a + b, 0);
const describeBin = (bin: Map<string, number>) =>
  [...bin]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([rpc, n]) => `${rpc} ${n}`)
    .join(', ');

/** True when the agent serves an SVID valid at `now` for every workload. */
function servesValid(agent: RunningAgent, now: number): boolean {
  return WORKLOAD_SELECTORS.every((s) => agent.cache.svidsFor(new Set([s])).some((svid) => svid.notAfter.getTime() > now));
}

/** An agent logger that only listens for the sync loop's "reached the CA again". */
function returnLogger(onReturn: () => void): Logger {
  return pino({ level: 'info' }, { write: (line: string) => (line.includes('"msg":"reached the CA again"') ? onReturn() : undefined) });
}

describe('a fleet of agents when the CA returns after an outage', () => {
  it('keeps every workload served, brings every agent back, and spreads the return over seconds', async () => {
    let t = await startTestCa();
    const port = t.ca.port;
    const caDir = t.dir;
    cleanups.push(() => t.cleanup());
    const counter = new RequestCounter();
    cleanups.push(() => counter.stop());
    counter.watch(t);

    let outageFrom = 0;
    let restartFrom = Infinity;
    const returnedAt = new Map<number, number>();
    const fatal: Error[] = [];
    const agents = await Promise.all(
      Array.from({ length: AGENTS }, async (_, i) => {
        const tmp = tempDir('brevis-fleet-');
        cleanups.push(tmp.cleanup);
        const { token, agentId } = await createJoinToken(t);
        for (const [j, selector] of WORKLOAD_SELECTORS.entries()) {
          await createEntry(t, { spiffeId: `spiffe://example.org/node-${i}/workload-${j}`, parentId: agentId, selectors: [selector], x509SvidTtl: SVID_TTL_S });
        }
        const logger = returnLogger(() => {
          const now = Date.now();
          if (now >= restartFrom && !returnedAt.has(i)) returnedAt.set(i, now);
        });
        const agent = await startAgent(agentConfig(t, tmp.dir, { joinToken: token, syncInterval: `${SYNC_INTERVAL_S}s` }), { logger, onFatal: (e) => fatal.push(e) });
        cleanups.push(() => agent.close());
        return agent;
      }),
    );
    await waitFor(() => agents.every((a) => servesValid(a, Date.now())), 30_000, 'every agent to serve its workloads');
    await waitFor(() => t.ca.push.hub.subscribers === AGENTS, 10_000, 'every change stream to open');

    // Every 200 ms until the end: does every agent serve a valid SVID to each of its workloads?
    const lapses: Array<{ agent: number; at: number }> = [];
    let checks = 0;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const now = Date.now();
        agents.forEach((a, i) => {
          if (!servesValid(a, now)) lapses.push({ agent: i, at: now });
        });
        checks++;
        await sleep(200);
      }
    })();
    cleanups.push(async () => {
      watching = false;
      await watcher;
    });

    // Steady state.
    await sleep(2 * SYNC_INTERVAL_S * 1000);
    const steadyFrom = Date.now();
    await sleep(STEADY_S * 1000 + 200);
    const steadyBins = perSecond(counter.arrivals, steadyFrom, STEADY_S);
    const steady = steadyBins.reduce((n, b) => n + total(b), 0) / STEADY_S;

    // The outage.
    counter.watch(null);
    outageFrom = Date.now();
    await t.stop();
    await sleep(OUTAGE_MS - (Date.now() - outageFrom));
    restartFrom = Date.now();
    t = await startTestCa({ listen: `127.0.0.1:${port}` }, caDir);
    const back = Date.now();
    counter.watch(t);

    await waitFor(() => returnedAt.size === AGENTS, RECOVERY_BOUND_MS, 'every agent to sync with the returned CA');
    await waitFor(() => t.ca.push.hub.subscribers === AGENTS, Math.max(0, back + RECOVERY_BOUND_MS - Date.now()), 'every change stream to reopen');
    // Every agent synced and reopened its stream by now: the window ends 2 s later.
    const afterS = Math.max(AFTER_MIN_S, Math.ceil((Date.now() + 2_000 - back) / 1000));
    await sleep(back + afterS * 1000 + 200 - Date.now());
    watching = false;
    await watcher;

    const afterBins = perSecond(counter.arrivals, back, afterS);
    const peak = Math.max(...afterBins.map(total));
    const ratio = peak / steady;
    const returnSeconds = new Map<number, number>();
    for (const at of returnedAt.values()) {
      const s = Math.max(0, Math.floor((at - back) / 1000));
      returnSeconds.set(s, (returnSeconds.get(s) ?? 0) + 1);
    }
    const mostReturnsInASecond = Math.max(...returnSeconds.values());
    const mostStreamsInASecond = Math.max(...afterBins.map((b) => b.get(STREAMS) ?? 0));

    console.log(
      [
        `${AGENTS} agents, sync interval ${SYNC_INTERVAL_S} s, CA down ${((back - outageFrom) / 1000).toFixed(1)} s (restart included)`,
        `steady: ${steady.toFixed(1)} requests/s over ${STEADY_S} s`,
        ...steadyBins.map((b, i) => `  steady +${i}s: ${total(b)} (${describeBin(b)})`),
        `after the return: peak ${peak} requests/s, ${ratio.toFixed(2)}x steady (bound ${RATIO_BOUND}x)`,
        ...afterBins.map((b, i) => `  back +${i}s: ${total(b)} (${describeBin(b)})${returnSeconds.has(i) ? `; agents back: ${returnSeconds.get(i)}` : ''}`),
        `agents back within ${((Math.max(...returnedAt.values()) - back) / 1000).toFixed(1)} s, over ${returnSeconds.size} distinct seconds, at most ${mostReturnsInASecond} in one second`,
        `SVID checks: ${checks} rounds x ${AGENTS} agents, lapses: ${lapses.length}`,
      ].join('\n'),
    );

    expect(fatal).toEqual([]);
    // No workload lost a valid SVID, during the outage or the return.
    expect(checks).toBeGreaterThan(50);
    expect(lapses).toEqual([]);
    // Every agent came back within the bound (the waitFor above).
    // No stampede: the return spread over seconds, and the peak stayed within the bound.
    expect(steady).toBeGreaterThan(0);
    expect(mostReturnsInASecond).toBeLessThanOrEqual(AGENTS * MAX_FLEET_SHARE_PER_SECOND);
    expect(mostStreamsInASecond).toBeLessThanOrEqual(AGENTS * MAX_FLEET_SHARE_PER_SECOND);
    expect(ratio).toBeLessThanOrEqual(RATIO_BOUND);
  }, 150_000);
});
