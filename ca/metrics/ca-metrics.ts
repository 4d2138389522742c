/**
 * The CA's Prometheus metrics, in a Registry of its own. Labels are bounded
 * sets (credential kinds, gRPC method and code names, attestation methods,
 * authority kinds and states): never a SPIFFE ID, serial or agent.
 *
 * Fed from the edges: the gRPC interceptor (ca/metrics/grpc-edge.ts) calls
 * observeRpc/observeResponse, the issuance decorators (metered.ts) call
 * observeIssuance, and store-backed gauges are read at scrape time
 * (store-gauges.ts). The same observations feed the dashboard's per-minute
 * history.
 */
import * as grpc from '@grpc/grpc-js';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { Clock } from '../../spiffe/clock.js';
import type { AuthorityKind, Store } from '../store/store.js';
import { ActivityHistory, ISSUANCE_KINDS, type IssuanceKind } from './activity-history.js';
import type { RpcObserver } from './grpc-edge.js';
import { registerStoreGauges } from './store-gauges.js';

export type { IssuanceKind } from './activity-history.js';
export type RotationOutcome = 'success' | 'failure';

/** Attestation RPCs and the method label each counts under. */
const ATTESTATION_RPCS: Record<string, 'join_token' | 'x509pop'> = {
  '/brevis.ca.v1.NodeService/AttestJoinToken': 'join_token',
  '/brevis.ca.v1.NodeService/AttestX509Pop': 'x509pop',
};
/** Batched mints answer OK with a status per item; refused items are errors too. */
const BATCH_MINT_RPC = '/brevis.ca.v1.NodeService/BatchMintX509SVID';

/** Issuance latency buckets, seconds: a leaf takes well under a millisecond to a few ms. */
const ISSUANCE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
/** Call latency buckets, seconds: a batch of 1,000 mints takes a few hundred ms. */
const RPC_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface MethodSeries {
  labels: { grpc_service: string; grpc_method: string };
  handled: Map<grpc.status, { inc(): void }>;
  seconds: { observe(v: number): void };
}

export class CaMetrics implements RpcObserver {
  /** Only this CA's series; scrape with `registry.metrics()`. */
  readonly registry = new Registry();
  /** Per-minute issuances and errors of the last hour (dashboard chart). */
  readonly history: ActivityHistory;

  readonly #issued: Counter<'kind'>;
  readonly #issuanceFailures: Counter<'kind'>;
  readonly #issuanceSeconds: Histogram<'kind'>;
  readonly #handled: Counter<'grpc_service' | 'grpc_method' | 'grpc_code'>;
  readonly #handlingSeconds: Histogram<'grpc_service' | 'grpc_method'>;
  readonly #errors: Counter<'grpc_code'>;
  readonly #attestations: Counter<'method' | 'outcome'>;
  readonly #rotations: Counter<'kind' | 'outcome'>;
  #processMetrics = false;
  readonly #methods = new Map<string, MethodSeries>();

  constructor(opts: { clock: Clock }) {
    this.history = new ActivityHistory(opts.clock);
    const registers = [this.registry];
    this.#issued = new Counter({
      name: 'brevis_ca_credentials_issued_total',
      help: 'Credentials issued, by kind (x509: X.509-SVIDs of workloads, agents and the CA itself; ssh_user, ssh_host: OpenSSH certificates).',
      labelNames: ['kind'],
      registers,
    });
    this.#issuanceFailures = new Counter({
      name: 'brevis_ca_issuance_failures_total',
      help: 'Issuances that failed after the request was accepted (signing or self-check), by kind.',
      labelNames: ['kind'],
      registers,
    });
    this.#issuanceSeconds = new Histogram({
      name: 'brevis_ca_issuance_duration_seconds',
      help: 'Time to build, sign and check one credential, by kind.',
      labelNames: ['kind'],
      buckets: ISSUANCE_BUCKETS,
      registers,
    });
    this.#handled = new Counter({
      name: 'brevis_ca_grpc_server_handled_total',
      help: 'gRPC calls completed, by service, method and status code.',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_code'],
      registers,
    });
    this.#handlingSeconds = new Histogram({
      name: 'brevis_ca_grpc_server_handling_seconds',
      help: 'Time from the start of a gRPC call to its status, by service and method.',
      labelNames: ['grpc_service', 'grpc_method'],
      buckets: RPC_BUCKETS,
      registers,
    });
    this.#errors = new Counter({
      name: 'brevis_ca_errors_total',
      help: 'Errors returned to callers by gRPC status code: failed calls, plus refused items of batched mints.',
      labelNames: ['grpc_code'],
      registers,
    });
    this.#attestations = new Counter({
      name: 'brevis_ca_attestations_total',
      help: 'Node attestations, by method and outcome.',
      labelNames: ['method', 'outcome'],
      registers,
    });
    this.#rotations = new Counter({
      name: 'brevis_ca_authority_rotations_total',
      help: 'Authority rotation steps (prepare, activate, retire), by authority kind and outcome.',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    for (const kind of ISSUANCE_KINDS) {
      this.#issued.inc({ kind }, 0);
      this.#issuanceFailures.inc({ kind }, 0);
      this.#issuanceSeconds.zero({ kind });
    }
    for (const method of Object.values(ATTESTATION_RPCS)) {
      for (const outcome of ['success', 'failure']) this.#attestations.inc({ method, outcome }, 0);
    }
  }

  /** One issuance attempt that reached the signer. */
  observeIssuance(kind: IssuanceKind, seconds: number, ok: boolean): void {
    if (ok) {
      this.#issued.inc({ kind });
      this.#issuanceSeconds.observe({ kind }, seconds);
      this.history.recordIssued(kind);
    } else {
      this.#issuanceFailures.inc({ kind });
    }
  }

  observeRpc(path: string, code: grpc.status, seconds: number): void {
    const m = this.#method(path);
    let handled = m.handled.get(code);
    if (!handled) {
      handled = this.#handled.labels({ ...m.labels, grpc_code: grpc.status[code] ?? 'UNKNOWN' });
      m.handled.set(code, handled);
    }
    handled.inc();
    m.seconds.observe(seconds);
    if (code !== grpc.status.OK) {
      this.#errors.inc({ grpc_code: grpc.status[code] ?? 'UNKNOWN' });
      this.history.recordErrors();
    }
    const attestation = ATTESTATION_RPCS[path];
    if (attestation) this.#attestations.inc({ method: attestation, outcome: code === grpc.status.OK ? 'success' : 'failure' });
  }

  /** Label children per method path, resolved once: label hashing is the costly part of an observation. */
  #method(path: string): MethodSeries {
    let m = this.#methods.get(path);
    if (!m) {
      const slash = path.lastIndexOf('/');
      const labels = { grpc_service: path.slice(1, slash), grpc_method: path.slice(slash + 1) };
      m = { labels, handled: new Map(), seconds: this.#handlingSeconds.labels(labels) };
      this.#methods.set(path, m);
    }
    return m;
  }

  observeResponse(path: string, message: unknown): void {
    if (path !== BATCH_MINT_RPC) return;
    const results = (message as { results?: Array<{ statusCode?: number }> } | null)?.results ?? [];
    for (const r of results) {
      if (!r.statusCode) continue;
      this.#errors.inc({ grpc_code: grpc.status[r.statusCode] ?? 'UNKNOWN' });
      this.history.recordErrors();
    }
  }

  /** The hook for the rotation engine: one rotation step of an authority kind finished. */
  observeRotation(kind: AuthorityKind, outcome: RotationOutcome): void {
    this.#rotations.inc({ kind, outcome });
  }

  /** Adds gauges read from the store at scrape time: agents, sync lag, authorities. */
  watchStore(store: Pick<Store, 'listAgents' | 'listAuthorities'>, clock: Clock): void {
    registerStoreGauges(this.registry, { store, clock });
  }

  /** Adds prom-client's process and Node.js runtime metrics (CPU, memory, event loop lag). Idempotent. */
  enableProcessMetrics(): void {
    if (this.#processMetrics) return;
    this.#processMetrics = true;
    collectDefaultMetrics({ register: this.registry });
  }
}
