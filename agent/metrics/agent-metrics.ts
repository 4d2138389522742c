/**
 * The agent's Prometheus metrics, in a Registry of its own. Measured at the
 * edges: calls to the CA through a metering proxy of the node API client,
 * Workload API calls and stream pushes through a gRPC server interceptor,
 * and the SVID cache, the agent SVID and the socket's connections read at
 * scrape time. Labels are method and status names only: never a SPIFFE ID,
 * serial, entry or workload.
 */
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { epochSeconds, type Clock } from '../../spiffe/clock.js';
import { edgeInterceptor, type RpcObserver } from '../../ca/metrics/grpc-edge.js';

/** What the agent exposes for scrape-time gauges; the running agent's parts fit. */
export interface AgentMetricsSources {
  /** Entries held and the newest SVID of each (SvidCache fits). */
  cache: {
    entries(): ReadonlyArray<{ id: string }>;
    svidOf(entryId: string): { notAfterMs: number } | null;
  };
  /** The agent's own SVID. */
  agentSvid(): { notAfter: Date };
  /** The Workload API server. */
  server: { openStreams(): number; connections(): { open: number; accepted: number } };
}

const NODE_API_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class AgentMetrics implements RpcObserver {
  /** Only this agent's series. */
  readonly registry = new Registry();
  readonly #clock: Clock;
  readonly #startedMs: number;
  #lastSyncMs: number | null = null;
  readonly #nodeCalls: Counter<'method' | 'code'>;
  readonly #nodeSeconds: Histogram<'method'>;
  readonly #minted: Counter;
  readonly #wlCalls: Counter<'grpc_service' | 'grpc_method' | 'grpc_code'>;
  readonly #pushes: Counter<'grpc_method'>;

  constructor(opts: { clock: Clock; processMetrics?: boolean }) {
    this.#clock = opts.clock;
    this.#startedMs = opts.clock.now().getTime();
    const registers = [this.registry];
    this.#nodeCalls = new Counter({
      name: 'brevis_agent_node_api_requests_total',
      help: 'Calls to the CA node API, by method and outcome code (OK, or the error code: UNAVAILABLE, PERMISSION_DENIED, ...).',
      labelNames: ['method', 'code'],
      registers,
    });
    this.#nodeSeconds = new Histogram({
      name: 'brevis_agent_node_api_request_duration_seconds',
      help: 'Duration of calls to the CA node API, by method.',
      labelNames: ['method'],
      buckets: NODE_API_BUCKETS,
      registers,
    });
    this.#minted = new Counter({
      name: 'brevis_agent_workload_svids_minted_total',
      help: 'Workload X.509-SVIDs received from the CA (new and rotated).',
      registers,
    });
    this.#wlCalls = new Counter({
      name: 'brevis_agent_workload_api_requests_total',
      help: 'Calls on the Workload API socket finished, by service, method and status code.',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_code'],
      registers,
    });
    this.#pushes = new Counter({
      name: 'brevis_agent_workload_api_stream_pushes_total',
      help: 'Messages sent to workloads on Workload API streams (the first answer and every update), by method.',
      labelNames: ['grpc_method'],
      registers,
    });
    const lastSync: Gauge = new Gauge({
      name: 'brevis_agent_sync_last_success_timestamp_seconds',
      help: 'When the agent last fetched its entries from the CA (0 before the first sync).',
      registers,
      collect: () => lastSync.set(this.#lastSyncMs === null ? 0 : this.#lastSyncMs / 1000),
    });
    const lag: Gauge = new Gauge({
      name: 'brevis_agent_sync_lag_seconds',
      help: 'Seconds since the agent last fetched its entries from the CA (since start before the first sync).',
      registers,
      collect: () => lag.set((this.#clock.now().getTime() - (this.#lastSyncMs ?? this.#startedMs)) / 1000),
    });
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** A proxy of the node API client whose every method call is counted and timed by method name. */
  meterNodeApi<T extends object>(api: T): T {
    const wrapped = new Map<PropertyKey, unknown>();
    return new Proxy(api, {
      get: (target, prop) => {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function' || typeof prop !== 'string') return v;
        let w = wrapped.get(prop);
        if (!w) {
          const fn = v as (...a: unknown[]) => unknown;
          w = (...args: unknown[]) => {
            const t0 = performance.now();
            const r = fn.apply(target, args);
            return r instanceof Promise ? this.#observeNodeCall(prop, t0, r) : r;
          };
          wrapped.set(prop, w);
        }
        return w;
      },
    });
  }

  /** The server interceptor that measures the Workload API socket (pass to startWorkloadApiServer). */
  interceptor(): grpc.ServerInterceptor {
    return edgeInterceptor({ observer: this });
  }

  observeRpc(path: string, code: grpc.status, _seconds: number): void {
    const slash = path.lastIndexOf('/');
    this.#wlCalls.inc({ grpc_service: path.slice(1, slash), grpc_method: path.slice(slash + 1), grpc_code: grpc.status[code] ?? 'UNKNOWN' });
  }

  observeResponse(path: string, _message: unknown, streaming: boolean): void {
    if (streaming) this.#pushes.inc({ grpc_method: path.slice(path.lastIndexOf('/') + 1) });
  }

  /** Adds the gauges read at scrape time from the running agent. */
  watch(src: AgentMetricsSources): void {
    const registers = [this.registry];
    const now = () => this.#clock.now().getTime();
    new Gauge({
      name: 'brevis_agent_svid_expiry_timestamp_seconds',
      help: "notAfter of the agent's own SVID.",
      registers,
      collect() {
        this.set(epochSeconds(src.agentSvid().notAfter));
      },
    });
    new Gauge({
      name: 'brevis_agent_entries',
      help: 'Registration entries the agent serves.',
      registers,
      collect() {
        this.set(src.cache.entries().length);
      },
    });
    new Gauge({
      name: 'brevis_agent_workload_svids',
      help: 'Unexpired workload X.509-SVIDs held in the cache.',
      registers,
      collect() {
        const t = now();
        this.set(src.cache.entries().filter((e) => (src.cache.svidOf(e.id)?.notAfterMs ?? 0) > t).length);
      },
    });
    new Gauge({
      name: 'brevis_agent_workload_svid_soonest_expiry_timestamp_seconds',
      help: 'notAfter of the cached workload SVID that expires first (no sample without one).',
      registers,
      collect() {
        const t = now();
        let min = Infinity;
        for (const e of src.cache.entries()) {
          const end = src.cache.svidOf(e.id)?.notAfterMs ?? 0;
          if (end > t && end < min) min = end;
        }
        this.reset();
        if (min !== Infinity) this.set(Math.floor(min / 1000));
      },
    });
    new Gauge({
      name: 'brevis_agent_workload_api_connections',
      help: 'Open connections on the Workload API socket.',
      registers,
      collect() {
        this.set(src.server.connections().open);
      },
    });
    new Counter({
      name: 'brevis_agent_workload_api_connections_total',
      help: 'Connections accepted on the Workload API socket.',
      registers,
      collect() {
        this.reset();
        this.inc(src.server.connections().accepted);
      },
    });
    new Gauge({
      name: 'brevis_agent_workload_api_open_streams',
      help: 'Open FetchX509SVID and FetchX509Bundles streams.',
      registers,
      collect() {
        this.set(src.server.openStreams());
      },
    });
  }

  async #observeNodeCall(method: string, t0: number, call: Promise<unknown>): Promise<unknown> {
    let code = 'OK';
    try {
      const r = await call;
      if (method === 'fetchAuthorizedEntries') this.#lastSyncMs = this.#clock.now().getTime();
      if (method === 'batchMintX509Svid' && Array.isArray(r)) this.#minted.inc(r.filter((x: { statusCode?: number }) => !x.statusCode).length);
      return r;
    } catch (e) {
      code = typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : 'INTERNAL';
      throw e;
    } finally {
      this.#nodeCalls.inc({ method, code });
      this.#nodeSeconds.observe({ method }, (performance.now() - t0) / 1000);
    }
  }
}
