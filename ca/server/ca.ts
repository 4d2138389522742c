/**
 * Assembles and runs a CA: store, keys, X.509 authority, its own serving
 * identity, the node API over TLS and the admin API on a Unix socket.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { NodeServiceService } from '../../proto/gen/brevis/ca/v1/node.js';
import { AdminServiceService } from '../../proto/gen/brevis/ca/v1/admin.js';
import { peerCertificateOnceInterceptor } from './peer-certificate-once.js';
import { HealthService as HealthServiceDef } from '../../proto/gen/grpc/health/v1/health.js';
import { realClock, type Clock } from '../../spiffe/clock.js';
import { pemDecodeAll } from '../../spiffe/pem.js';
import type { CaConfig } from '../config/config.js';
import { logKeyCustody, openKeyCustody } from '../keys/key-custody.js';
import { selectKeyStore } from '../keys/postgres-keystore.js';
import { clusterFor, type ClusterTimings } from '../ha/cluster.js';
import { crashHookFromEnv } from '../crash-hook.js';
import { describeDatastore, openDatastore } from '../store/datastore.js';
import type { Store } from '../store/store.js';
import type { X509Authority } from '../authority/x509-authority.js';
import { X509Minter } from '../issue/x509-minter.js';
import type { SshAuthority } from '../ssh/ssh-authority.js';
import { SshIssuer } from '../ssh/ssh-issuer.js';
import { createNodeService } from '../api/node-service.js';
import { createAdminService } from '../api/admin-service.js';
import { guardDecoding, undecodableInterceptor } from '../api/undecodable.js';
import { rateLimitInterceptor } from '../limits/rate-limit-interceptor.js';
import type { CaContext } from '../api/context.js';
import { ServerIdentity } from './server-identity.js';
import { HealthService } from '../../agent/workload-api/health.js';
import { AuditServiceService } from '../../proto/gen/brevis/ca/v1/audit.js';
import { BackupServiceService } from '../../proto/gen/brevis/ca/v1/backup.js';
import { caBackupService } from '../backup/backup-service.js';
import { createAuditService } from '../api/audit-service.js';
import type { AuthorityLifecycle } from '../rotation/lifecycle.js';
import { openAuthorityLifecycle, startRotation } from '../rotation/open.js';
import { createPush, type PushContext } from '../push/push-context.js';
import { AuthorityServiceService } from '../../proto/gen/brevis/ca/v1/authority.js';
import { createAuthorityService } from '../api/authority-service.js';
import { ADMIN_CALLER } from '../api/admin-service.js';
import { CaMetrics } from '../metrics/ca-metrics.js';
import { edgeInterceptor, tlsPeerCaller } from '../metrics/grpc-edge.js';
import { meterMinter, meterSshIssuer } from '../metrics/metered.js';
import { startMetricsServer } from '../metrics/metrics-server.js';
import { startCaDashboard } from '../dashboard/start-dashboard.js';
import { lifecycleProgress } from '../dashboard/rotation-progress.js';
import { verifyAuditChain } from '../audit/verify-chain.js';

/** gRPC message size limit for the node and admin APIs (a batch of 1,000 CSRs fits). */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

export interface RunningCa {
  /** The node API port actually bound (useful with port 0). */
  port: number;
  adminSocket: string;
  trustDomain: string;
  store: Store;
  authority: X509Authority;
  /** The SSH user and host CAs. */
  sshAuthority: SshAuthority;
  /** The authority life cycle: rotation of the X.509 and SSH CA keys. */
  lifecycle: AuthorityLifecycle;
  /** Push sync: change notifications to connected agents, their reports. */
  push: PushContext;
  /** Counters and histories fed by the gRPC edge and issuance (also the rotation hook: `metrics.observeRotation`). */
  metrics: CaMetrics;
  /** Port of the Prometheus endpoint, or null when `metricsListen` is off. */
  metricsPort: number | null;
  /** Port of the web dashboard, or null when it is off. */
  dashboardPort: number | null;
  close(): Promise<void>;
}

export async function startCa(
  config: CaConfig,
  deps: { logger: Logger; clock?: Clock; /** Several servers on PostgreSQL: coordination intervals (tests shorten them). */ cluster?: ClusterTimings },
): Promise<RunningCa> {
  const clock = deps.clock ?? realClock;
  const { logger } = deps;
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const mode = statSync(config.dataDir).mode & 0o777;
  if (mode & 0o077) {
    chmodSync(config.dataDir, 0o700);
    logger.warn({ dataDir: config.dataDir, was: mode.toString(8) }, 'data directory was accessible to others; set to 0700');
  }

  // Before the database: a key file others can read stops the start here.
  const custody = await openKeyCustody(config.dataDir, config.kek);
  logKeyCustody(custody, logger);
  const datastore = await openDatastore(config.datastore, {
    dataDir: config.dataDir,
    clock,
    onConnectionError: (err) => logger.warn({ err: err.message }, 'a PostgreSQL connection failed; the pool replaces it'),
    crashHook: crashHookFromEnv(),
  });
  const store = datastore.store;
  // With a shared PostgreSQL datastore the CA keys live in it, sealed under the KEK.
  const keys = selectKeyStore(datastore, custody.keys, custody.kek.source, clock);
  // Several servers on that database: one transition at a time, one rotator, changes followed.
  const cluster = clusterFor(datastore, logger, deps.cluster);
  logger.info({ datastore: describeDatastore(config.datastore, config.dataDir) }, 'datastore open');

  let closers: Array<() => Promise<void> | void> = [() => store.close()];
  const closeAll = async () => {
    for (const c of closers.reverse()) await c();
    closers = [];
  };
  try {
    const metrics = new CaMetrics({ clock });
    metrics.watchStore(store, clock);
    const lifecycle = await openAuthorityLifecycle({
      store,
      lifecycleStore: datastore.lifecycleStore,
      keys,
      clock,
      config,
      logger,
      onTransition: (kind, _action, outcome) => metrics.observeRotation(kind, outcome),
      ...(cluster ? { clusterLock: cluster.clusterLock } : {}),
    });
    const authority = lifecycle.x509;
    const pushing = createPush(lifecycle);
    const x509Minter = new X509Minter({ authority, clock, backdateSeconds: config.backdateSeconds, mintWorkers: config.mintWorkers });
    closers.push(() => x509Minter.close());
    const minter = meterMinter(x509Minter, metrics);
    const sshAuthority = lifecycle.ssh;
    const sshIssuer = meterSshIssuer(new SshIssuer({ authority: sshAuthority, clock, backdateSeconds: config.backdateSeconds }), metrics);
    const x509popCas = config.x509popCaBundle ? loadPemCerts(config.x509popCaBundle) : null;
    const ctx: CaContext = {
      trustDomain: config.trustDomain,
      clock,
      store,
      minter,
      bundle: () => authority.bundle(),
      svidTtl: {
        defaultSeconds: config.x509SvidDefaultTtlSeconds,
        minSeconds: config.x509SvidMinTtlSeconds,
        maxSeconds: config.x509SvidMaxTtlSeconds,
      },
      agentSvidTtlSeconds: config.agentSvidTtlSeconds,
      joinTokenTtl: { defaultSeconds: config.joinTokenDefaultTtlSeconds, minSeconds: 1, maxSeconds: config.joinTokenMaxTtlSeconds },
      x509popCas,
      logger,
      push: pushing.push,
      ssh: {
        issuer: sshIssuer,
        trustedKeys: (kind) => sshAuthority.trustedKeys(kind),
        userTtl: { defaultSeconds: config.sshUserDefaultTtlSeconds, minSeconds: config.sshMinTtlSeconds, maxSeconds: config.sshUserMaxTtlSeconds },
        hostTtl: { defaultSeconds: config.sshHostDefaultTtlSeconds, minSeconds: config.sshMinTtlSeconds, maxSeconds: config.sshHostMaxTtlSeconds },
      },
    };

    const identity = new ServerIdentity({
      trustDomain: config.trustDomain,
      minter,
      clock,
      ttlSeconds: config.agentSvidTtlSeconds,
      onError: (e) => logger.error({ err: e }, 'renewing the CA serving SVID failed'),
    });
    await identity.start(authority.bundle().roots);
    closers.push(() => identity.stop());
    closers.push(startRotation({ lifecycle, identity, clock, logger, config, ...(cluster ? { singleton: cluster.singleton } : {}) }));
    if (cluster) {
      const following = cluster.follow({ refreshLifecycle: () => lifecycle.refresh(), hub: pushing.push.hub });
      closers.push(() => following.close());
    }

    const health = new HealthService();
    const serverOptions = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // No channelz service is served, so grpc-js's per-call channelz
      // bookkeeping (timestamps, counters, a tracker per call) is work for nobody.
      'grpc.enable_channelz': 0,
    };
    const nodeServer = new grpc.Server({
      ...serverOptions,
      interceptors: [
        peerCertificateOnceInterceptor(),
        edgeInterceptor({ logger, observer: metrics, caller: tlsPeerCaller }),
        undecodableInterceptor(),
        rateLimitInterceptor({ limits: config.rateLimits }),
      ],
    });
    nodeServer.addService(guardDecoding(NodeServiceService), createNodeService(ctx));
    nodeServer.addService(guardDecoding(HealthServiceDef), health.handlers());
    // Client certificates are requested but not required: attestation RPCs
    // run without one; every other node RPC checks the agent SVID itself.
    const creds = grpc.experimental.createCertificateProviderServerCredentials(identity, identity, false);
    const port = await bind(nodeServer, config.listen, creds);
    closers.push(() => shutdown(nodeServer));
    // Runs before the shutdown above (closers run in reverse): open WatchChanges streams end first.
    closers.push(() => pushing.close());

    const adminServer = new grpc.Server({
      ...serverOptions,
      interceptors: [edgeInterceptor({ logger, observer: metrics, caller: () => ADMIN_CALLER, okLevel: 'info' }), undecodableInterceptor()],
    });
    adminServer.addService(guardDecoding(AdminServiceService), createAdminService(ctx));
    adminServer.addService(guardDecoding(AuditServiceService), createAuditService({ read: (o) => datastore.readAuditChain(o), logger }));
    adminServer.addService(guardDecoding(HealthServiceDef), health.handlers());
    adminServer.addService(
      guardDecoding(BackupServiceService),
      caBackupService({ trustDomain: config.trustDomain, dataDir: config.dataDir, kek: custody.kek, store, clock, logger, caller: ADMIN_CALLER }),
    );
    adminServer.addService(guardDecoding(AuthorityServiceService), createAuthorityService({ lifecycle, logger }));
    if (existsSync(config.adminSocket)) unlinkSync(config.adminSocket);
    mkdirSync(path.dirname(config.adminSocket), { recursive: true, mode: 0o700 });
    await bind(adminServer, `unix://${config.adminSocket}`, grpc.ServerCredentials.createInsecure());
    chmodSync(config.adminSocket, 0o600);
    closers.push(() => shutdown(adminServer));

    let metricsPort: number | null = null;
    if (config.metricsListen) {
      metrics.enableProcessMetrics();
      const m = await startMetricsServer({ listen: config.metricsListen, registry: metrics.registry, logger });
      closers.push(() => m.close());
      metricsPort = m.port;
    }

    let dashboardPort: number | null = null;
    if (config.dashboard) {
      const d = await startCaDashboard(config.dashboard, {
        trustDomain: config.trustDomain,
        clock,
        store,
        history: metrics.history,
        logger,
        readAudit: (o) => datastore.readAuditChain(o),
        verifyAudit: () => verifyAuditChain((afterSeq, limit) => datastore.readAuditChain({ afterSeq, limit })),
        rotationProgress: lifecycleProgress(lifecycle),
        maxCredentialTtlSeconds: Math.max(config.x509SvidMaxTtlSeconds, config.agentSvidTtlSeconds, config.sshUserMaxTtlSeconds, config.sshHostMaxTtlSeconds),
      });
      closers.push(() => d.close());
      dashboardPort = d.port;
    }

    health.setStatus('', 'SERVING');
    logger.info(
      { trustDomain: config.trustDomain, listen: config.listen, port, adminSocket: config.adminSocket, intermediate: authority.signing().record.id, metricsPort, dashboardPort },
      'CA serving',
    );
    return {
      port,
      adminSocket: config.adminSocket,
      trustDomain: config.trustDomain,
      store,
      authority,
      sshAuthority,
      lifecycle,
      push: pushing.push,
      metrics,
      metricsPort,
      dashboardPort,
      close: async () => {
        health.setStatus('', 'NOT_SERVING');
        await closeAll();
      },
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

function loadPemCerts(file: string): X509Certificate[] {
  const ders = pemDecodeAll(readFileSync(file, 'utf8'), 'CERTIFICATE');
  if (ders.length === 0) throw new Error(`${file} holds no certificates`);
  return ders.map((d) => new X509Certificate(d));
}

function bind(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (err, port) => (err ? reject(new Error(`cannot listen on ${address}: ${err.message}`)) : resolve(port)));
  });
}

function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2000);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
