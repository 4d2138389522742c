/**
 * The node agent, assembled: its identity (attest or reuse, renew), the
 * sync loop with the CA, the SVID cache, and the Workload API server on
 * the configured socket.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Bundle } from '../proto/gen/brevis/ca/v1/types.js';
import { bundleFromPem } from '../spiffe/bundle.js';
import { realClock, type Clock } from '../spiffe/clock.js';
import { SvidCache } from './cache/svid-cache.js';
import { AgentConfigError, type AgentConfig } from './config/config.js';
import { NodeChannel } from './node/channel.js';
import { Mutex } from './node/mutex.js';
import { NodeApi } from './node/node-api.js';
import { AgentMetrics } from './metrics/agent-metrics.js';
import { startMetricsServer, type MetricsServer } from '../ca/metrics/metrics-server.js';
import { AgentSsh, checkSshFiles } from './ssh/agent-ssh.js';
import { PushSync } from './push/push-sync.js';
import { AgentIdentity } from './svid/agent-identity.js';
import type { AgentSvid } from './svid/agent-svid.js';
import { AGENT_BUNDLE_FILE, ensureDataDir, loadStoredBundle, saveBundle } from './svid/storage.js';
import { DEFAULT_BACKOFF, type BackoffPolicy } from './sync/backoff.js';
import { MemoryReleaser } from './memory/free-memory.js';
import { Syncer, type SyncReport } from './sync/syncer.js';
import { startWorkloadApiServer, type WorkloadApiServer } from './workload-api/server.js';

export interface AgentDeps {
  logger: Logger;
  clock?: Clock;
  /** Retry delays towards the CA (default 1 s doubling to 30 s). */
  backoff?: BackoffPolicy;
  random?: () => number;
  /** Aborts a first attestation that keeps failing because the CA cannot be reached. */
  signal?: AbortSignal;
  /** Called once if the agent stops by itself (its identity is lost for good); it is closed by then. */
  onFatal?: (err: Error) => void;
}

export interface RunningAgent {
  /** What the Workload API serves from: entries, SVIDs, bundle. */
  readonly cache: SvidCache;
  readonly socketPath: string;
  /** The agent's current SVID (it changes on renewal). */
  agentSvid(): AgentSvid;
  /** The SSH side: host certificate keeper, user certificate signer. */
  readonly ssh: AgentSsh;
  /** Syncs with the CA now, outside the schedule. */
  syncNow(): Promise<SyncReport>;
  /** Resolves when the agent stops: with the error that stopped it, or null after close(). Never rejects. */
  readonly stopped: Promise<Error | null>;
  /** Port of the Prometheus endpoint, or null when `metricsListen` is off. */
  readonly metricsPort: number | null;
  close(): Promise<void>;
}

/**
 * Starts the agent. Resolves once it has an identity (reused from the data
 * directory, or attested) and serves the Workload API, which answers
 * Unavailable until the first sync completes. Rejects with
 * AgentSvidError/AgentConfigError when the operator must act.
 */
export async function startAgent(config: AgentConfig, deps: AgentDeps): Promise<RunningAgent> {
  const clock = deps.clock ?? realClock;
  const backoff = deps.backoff ?? DEFAULT_BACKOFF;
  const { logger } = deps;
  checkSshFiles(config.ssh);
  ensureDataDir(config.dataDir);

  const stored = loadStoredBundle(config.dataDir);
  const roots = stored ?? readBootstrapBundle(config);
  const channel = new NodeChannel({
    address: config.serverAddresses,
    trustDomain: config.trustDomain,
    roots,
    onFailover: (from, to, reason) => logger.warn({ from, to, err: reason }, 'CA server unreachable; moved to the next one'),
  });
  const metrics = config.metricsListen ? new AgentMetrics({ clock }) : null;
  const api = metrics ? metrics.meterNodeApi(new NodeApi(channel)) : new NodeApi(channel);
  const lock = new Mutex();
  const cache = new SvidCache({ trustDomain: config.trustDomain, roots, clock });

  let savedRoots: readonly Buffer[] | null = stored;
  const applyBundle = (bundle: Bundle) => {
    if (bundle.trustDomain !== config.trustDomain) {
      logger.error({ got: bundle.trustDomain, want: config.trustDomain }, 'ignored a bundle for another trust domain');
      return;
    }
    const next = bundle.x509Authorities.map((r) => Buffer.from(r));
    if (next.length === 0) return;
    if (cache.setBundle(next)) logger.info({ roots: next.length, sequence: bundle.sequence }, 'trust bundle updated');
    channel.setRoots(next);
    push.bundleApplied(bundle.sequence);
    if (!savedRoots || !sameRoots(savedRoots, next)) {
      saveBundle(config.dataDir, next);
      savedRoots = next;
    }
  };

  const identity = new AgentIdentity({
    dataDir: config.dataDir,
    trustDomain: config.trustDomain,
    attestation: config.attestation,
    api,
    lock,
    clock,
    logger,
    rotation: config.rotation,
    backoff,
    onBundle: applyBundle,
    ...(deps.random ? { random: deps.random } : {}),
  });
  const ssh = new AgentSsh({
    config: config.ssh,
    api,
    lock,
    entries: cache,
    clock,
    logger,
    rotation: config.rotation,
    backoff,
    ...(deps.random ? { random: deps.random } : {}),
  });
  // Change notifications from the CA wake the sync loop; reports tell the CA what was applied and is held.
  const push = new PushSync({
    channel,
    lock,
    cache,
    identity,
    clock,
    logger,
    backoff,
    wake: () => syncer.wake(),
    ssh,
    bundleFile: path.join(config.dataDir, AGENT_BUNDLE_FILE),
    ...(deps.random ? { random: deps.random } : {}),
  });
  let server: WorkloadApiServer;
  let metricsServer: MetricsServer | null = null;
  try {
    // Serving metrics first shows a first attestation that keeps failing.
    if (metrics && config.metricsListen) metricsServer = await startMetricsServer({ listen: config.metricsListen, registry: metrics.registry, logger });
    await identity.start(deps.signal);
    server = await startWorkloadApiServer({
      socketPath: config.socketPath,
      provider: cache,
      logger,
      clock,
      services: [ssh.service()],
      ...(metrics ? { interceptors: [metrics.interceptor()] } : {}),
    });
  } catch (e) {
    await metricsServer?.close();
    channel.close();
    cache.close();
    throw e;
  }
  metrics?.watch({ cache, agentSvid: () => identity.current, server });

  const memory = new MemoryReleaser();
  const syncer = new Syncer({
    api,
    lock,
    cache,
    identity,
    clock,
    logger,
    intervalMs: config.syncIntervalSeconds * 1000,
    rotation: config.rotation,
    backoff,
    onBundle: applyBundle,
    onSsh: (info) => {
      push.observeSsh(info);
      ssh.applySync(info);
    },
    onAuthorities: (authorities) => push.onAuthorities(authorities),
    onSynced: () => push.onSynced(),
    afterSync: (r) => memory.afterSync(r.added + r.removed + r.updated + r.minted),
    ...(deps.random ? { random: deps.random } : {}),
  });

  const loops = new AbortController();
  let resolveStopped!: (e: Error | null) => void;
  const stopped = new Promise<Error | null>((r) => (resolveStopped = r));
  let closing: Promise<void> | null = null;
  const close = (reason: Error | null): Promise<void> => {
    closing ??= (async () => {
      loops.abort();
      memory.close();
      await Promise.allSettled(running);
      await server.close();
      await metricsServer?.close();
      cache.close();
      channel.close();
      resolveStopped(reason);
    })();
    return closing;
  };
  const fail = (e: unknown) => {
    if (loops.signal.aborted) return;
    const err = e instanceof Error ? e : new Error(String(e));
    logger.error({ err: err.message, code: (err as { code?: string }).code }, 'the agent stops');
    void close(err).then(() => deps.onFatal?.(err));
  };
  const running = [identity.run(loops.signal).catch(fail), syncer.run(loops.signal).catch(fail), ssh.run(loops.signal).catch(fail), push.run(loops.signal).catch(fail)];
  logger.info(
    { agentId: identity.current.spiffeId, server: config.serverAddress, socket: config.socketPath, syncIntervalSeconds: config.syncIntervalSeconds },
    'agent running',
  );

  return {
    cache,
    socketPath: config.socketPath,
    agentSvid: () => identity.current,
    ssh,
    syncNow: () => syncer.syncOnce(),
    stopped,
    metricsPort: metricsServer?.port ?? null,
    close: () => close(null),
  };
}

function sameRoots(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  return a.length === b.length && a.every((r, i) => r.equals(b[i]!));
}

function readBootstrapBundle(config: AgentConfig): Buffer[] {
  let text: string;
  try {
    text = readFileSync(config.trustBundleFile, 'utf8');
  } catch (e) {
    throw new AgentConfigError(`cannot read --trust-bundle ${config.trustBundleFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return [...bundleFromPem(config.trustDomain, text).authorities];
  } catch (e) {
    throw new AgentConfigError(`--trust-bundle ${config.trustBundleFile}: ${(e as Error).message}`);
  }
}
