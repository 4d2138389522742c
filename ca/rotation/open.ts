/**
 * Assembly of the authority life cycle for a running CA: the life cycle
 * from the CA configuration, and its wiring to the CA's serving identity
 * and to the automatic rotation.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../spiffe/clock.js';
import type { CaConfig } from '../config/config.js';
import type { CaKeyStore } from '../keys/keystore.js';
import type { MintedSvid } from '../api/context.js';
import type { LifecycleStorage } from '../store/datastore.js';
import type { AuthorityKind, Store } from '../store/store.js';
import { parseCertificate } from '../x509/parse.js';
import { crashHookFromEnv } from '../crash-hook.js';
import { AuthorityLifecycle } from './lifecycle.js';
import type { SingletonRunner } from '../ha/singleton.js';
import { Rotator } from './rotator.js';

export interface OpenLifecycleDeps {
  store: Pick<Store, 'listAgents'>;
  /** The life cycle's tables in the same database (OpenedDatastore.lifecycleStore). */
  lifecycleStore: LifecycleStorage;
  keys: CaKeyStore;
  clock: Clock;
  config: CaConfig;
  logger: Logger;
  onTransition?: (kind: AuthorityKind, action: string, outcome: 'success' | 'failure') => void;
  /** Several servers on one database: the cluster-wide transition lock (OpenedDatastore.clusterLock). */
  clusterLock?: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** Opens the life cycle: recovers interrupted transitions, creates first-start authorities, loads the state. */
export function openAuthorityLifecycle(d: OpenLifecycleDeps): Promise<AuthorityLifecycle> {
  const c = d.config;
  return AuthorityLifecycle.open({
    lifecycleStore: d.lifecycleStore,
    store: d.store,
    keys: d.keys,
    clock: d.clock,
    trustDomain: c.trustDomain,
    keyType: c.keyType,
    sshKeyType: c.sshKeyType,
    rootTtlSeconds: c.rootTtlSeconds,
    intermediateTtlSeconds: c.intermediateTtlSeconds,
    retire: {
      x509LeafSeconds: Math.max(c.x509SvidMaxTtlSeconds, c.agentSvidTtlSeconds) + c.backdateSeconds,
      sshUserSeconds: c.sshUserMaxTtlSeconds + c.backdateSeconds,
      sshHostSeconds: c.sshHostMaxTtlSeconds + c.backdateSeconds,
    },
    agentSvidTtlSeconds: c.agentSvidTtlSeconds,
    logger: d.logger,
    crashHook: crashHookFromEnv(),
    ...(d.onTransition ? { onTransition: d.onTransition } : {}),
    ...(d.clusterLock ? { clusterLock: d.clusterLock } : {}),
  });
}

/** The authority ids a chain vouches through: each certificate's AuthorityKeyIdentifier. */
export function chainAuthorityIds(chain: readonly Uint8Array[]): string[] {
  const ids = new Set<string>();
  for (const der of chain) {
    const aki = parseCertificate(der).akiHex;
    if (aki) ids.add(aki);
  }
  return [...ids];
}

/** What the life cycle needs from the CA's serving identity. */
export interface ServingIdentity {
  readonly svid: MintedSvid | null;
  setRoots(roots: Buffer[]): void;
  renew(): Promise<void>;
}

/**
 * Keeps the CA's serving identity in step with the life cycle (new roots
 * trusted for client certificates, a new SVID whenever the signing chain
 * may have changed) and runs the automatic rotation. Returns a closer.
 */
export function startRotation(d: {
  lifecycle: AuthorityLifecycle;
  identity: ServingIdentity;
  clock: Clock;
  logger: Logger;
  /** Several servers on one database: run the automatic rotation only while this server holds the singleton (ca/ha/singleton.ts). */
  singleton?: SingletonRunner;
  /** Scheduled SSH CA rotation settings (off when sshCaRotationSeconds is null). */
  config?: Pick<CaConfig, 'sshCaRotationSeconds' | 'sshCaRotationOverlapSeconds'>;
}): () => Promise<void> {
  const { lifecycle, identity, logger } = d;
  lifecycle.setServerChainIds(() => (identity.svid ? chainAuthorityIds(identity.svid.chain) : []));
  const off = lifecycle.onChange(() => {
    identity.setRoots(lifecycle.x509.bundle().roots);
    identity.renew().catch((e: unknown) => logger.error({ err: e }, 'renewing the CA serving SVID after an authority change failed'));
  });
  const every = d.config?.sshCaRotationSeconds ?? null;
  const ssh = every !== null && d.config ? { everySeconds: every, overlapSeconds: d.config.sshCaRotationOverlapSeconds } : undefined;
  const rotate = (signal: AbortSignal) => new Rotator({ lifecycle, clock: d.clock, logger, ...(ssh ? { ssh } : {}) }).run(signal);
  if (d.singleton) {
    // A server taking over first rolls back what a dead one left half done.
    const lease = d.singleton(async (signal) => {
      await lifecycle.recoverInterrupted();
      await rotate(signal);
    });
    return async () => {
      off();
      await lease.close();
    };
  }
  const stop = new AbortController();
  const running = rotate(stop.signal);
  return async () => {
    off();
    stop.abort();
    await running;
  };
}
