/**
 * The Workload API server: SpiffeWorkloadAPI and grpc.health.v1.Health on a
 * Unix socket.
 *
 * Connections are accepted on our own net.Server, not by grpc-js, so that the
 * kernel credentials of each peer (SO_PEERCRED, plus a pidfd) are read before
 * the connection is handed to grpc-js through a connection injector.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type Clock, realClock } from '../../spiffe/clock.js';
import { closePidfd, peerCredOf, type PeerCred } from '../attest/peercred.js';
import { attestUnixProcess } from '../attest/unix.js';
import { WorkloadApiError } from './errors.js';
import { type WorkloadApiLogger, type WorkloadAttestor, WorkloadApiHandlers, workloadApiDefinition } from './handlers.js';
import { HealthService, HealthServiceDefinition, ServingStatus } from './health.js';
import { PeerRegistry } from './peers.js';
import type { WorkloadIdentityProvider } from './provider.js';
import { ResponseCache } from './responses.js';
import { guardDecoding, undecodableInterceptor } from '../../ca/api/undecodable.js';

export type { WorkloadApiLogger, WorkloadAttestor } from './handlers.js';

/** The service name health reports for the Workload API. */
export const WORKLOAD_API_SERVICE = 'SpiffeWorkloadAPI';

/** How long close() lets calls finish before cutting connections, in milliseconds. */
const DEFAULT_SHUTDOWN_GRACE_MS = 2_000;

export interface WorkloadApiServerOptions {
  /** Absolute or relative path of the Unix socket; its directory is created if missing. */
  socketPath: string;
  provider: WorkloadIdentityProvider;
  /** Default: Unix attestation (agent/attest/unix.ts). */
  attestor?: WorkloadAttestor;
  logger?: WorkloadApiLogger;
  /** Used to skip expired SVIDs and for the attestor's caches. */
  clock?: Clock;
  /** Default 2000. */
  shutdownGraceMs?: number;
  /**
   * More services served on the same socket (never inside SpiffeWorkloadAPI),
   * e.g. SSH certificates. Each is built with the server's per-call
   * attestation, so callers are identified from kernel credentials only.
   */
  services?: readonly ExtraServiceFactory[];
  /** gRPC server interceptors for every call on the socket (metrics). */
  interceptors?: grpc.ServerInterceptor[];
}

/**
 * Attests the caller of a call on this socket, per call: its selectors, or
 * undefined when its connection is gone. Rejects with the attestor's error
 * (an AttestationError when the caller could not be attested).
 */
export type CallAttestor = (call: { getPeer(): string }) => Promise<string[] | undefined>;

/** A service to serve next to the Workload API, built from the server's attestor. */
export type ExtraServiceFactory = (attestCall: CallAttestor) => {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
};

export interface WorkloadApiServer {
  /** The socket path served (resolved to absolute). */
  readonly socketPath: string;
  /** Number of open FetchX509SVID/FetchX509Bundles streams. */
  openStreams(): number;
  /** Connections open now, and accepted since start. */
  connections(): { open: number; accepted: number };
  /**
   * Stops accepting, ends open streams with Unavailable, lets calls finish
   * for the grace period, then cuts what remains. Resolves once the socket is
   * closed; idempotent.
   */
  close(): Promise<void>;
}

/**
 * Starts serving on `socketPath`. A stale socket left by a dead agent is
 * replaced; a live one (something accepts connections on it) or a path that
 * is not a socket is refused with a WorkloadApiError.
 *
 * The socket is made mode 0777: any local process may connect, and who it is
 * decides what it gets (attestation). Restrict access with the permissions of
 * the directory holding the socket if needed.
 */
export async function startWorkloadApiServer(opts: WorkloadApiServerOptions): Promise<WorkloadApiServer> {
  const socketPath = path.resolve(opts.socketPath);
  const { provider, logger } = opts;
  const clock = opts.clock ?? realClock;
  const attest: WorkloadAttestor = opts.attestor ?? ((cred: PeerCred) => attestUnixProcess(cred, { clock, logger }));
  await removeStaleSocket(socketPath);

  const peers = new PeerRegistry();
  const cache = new ResponseCache(provider, clock, logger);
  const handlers = new WorkloadApiHandlers({ provider, cache, peers, attest, logger });
  const readiness = () => (provider.isReady() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  const syncHealth = () => {
    const status = readiness();
    health.setStatus('', status);
    health.setStatus(WORKLOAD_API_SERVICE, status);
  };
  const health = new HealthService({ '': readiness(), [WORKLOAD_API_SERVICE]: readiness() }, syncHealth);

  const grpcServer = new grpc.Server({
    // Requests are a few hundred bytes; refuse anything large before decoding it.
    'grpc.max_receive_message_length': 64 * 1024,
    // Undecodable requests get InvalidArgument (after the caller's interceptors, which see that status).
    interceptors: [...(opts.interceptors ?? []), undecodableInterceptor()],
  });
  grpcServer.addService(guardDecoding(workloadApiDefinition), handlers.implementation());
  grpcServer.addService(guardDecoding(HealthServiceDefinition), health.handlers());
  const attestCall: CallAttestor = (call) => peers.use(call.getPeer(), attest);
  for (const build of opts.services ?? []) {
    const { definition, implementation } = build(attestCall);
    grpcServer.addService(guardDecoding(definition), implementation);
  }
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());

  // Changes come in bursts (a sync touches many entries): invalidate at once so
  // new calls see the new state, and fan out to open streams once per burst.
  let fanOutPending = false;
  const unsubscribe = provider.onChange(() => {
    cache.invalidate();
    if (fanOutPending) return;
    fanOutPending = true;
    setImmediate(() => {
      fanOutPending = false;
      syncHealth();
      handlers.refreshStreams();
    });
  });

  let closing: Promise<void> | undefined;
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const netServer = net.createServer((socket) => {
    let cred: PeerCred;
    try {
      cred = peerCredOf(socket);
    } catch (e) {
      logger?.warn({ err: (e as Error).message }, 'refused a Workload API connection: no peer credentials');
      socket.destroy();
      return;
    }
    if (closing) {
      closePidfd(cred.pidfd);
      socket.destroy();
      return;
    }
    sockets.add(socket);
    accepted++;
    socket.once('close', () => sockets.delete(socket));
    peers.add(socket, cred);
    injector.injectConnection(socket);
  });
  netServer.on('error', (e) => logger?.warn({ err: e.message, socketPath }, 'Workload API socket error'));
  try {
    await new Promise<void>((resolve, reject) => {
      netServer.once('error', reject);
      netServer.listen(socketPath, () => {
        netServer.off('error', reject);
        resolve();
      });
    });
    fs.chmodSync(socketPath, 0o777);
  } catch (e) {
    unsubscribe();
    netServer.close();
    grpcServer.forceShutdown();
    throw e;
  }

  const graceMs = opts.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  return {
    socketPath,
    openStreams: () => handlers.openStreams,
    connections: () => ({ open: sockets.size, accepted }),
    close: () => {
      closing ??= (async () => {
        unsubscribe();
        const listenerClosed = new Promise<void>((resolve) => netServer.close(() => resolve()));
        handlers.shutdown();
        health.close();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            grpcServer.forceShutdown();
            resolve();
          }, graceMs);
          grpcServer.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        injector.destroy();
        // Sessions are gone; a socket still open (a client that never spoke
        // HTTP/2) would keep the listener's close callback waiting.
        for (const s of sockets) s.destroy();
        await listenerClosed;
      })();
      return closing;
    },
  };
}

/**
 * Makes `socketPath` free to bind: creates its directory, and removes a
 * socket file nobody accepts on (left by an agent that died).
 */
async function removeStaleSocket(socketPath: string): Promise<void> {
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw new WorkloadApiError('SOCKET_PATH_INVALID', `${socketPath} exists and is not a socket; refusing to replace it`);
  }
  if (await acceptsConnections(socketPath)) {
    throw new WorkloadApiError('SOCKET_IN_USE', `another process is serving on ${socketPath}`);
  }
  fs.unlinkSync(socketPath);
}

function acceptsConnections(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (e: NodeJS.ErrnoException) => {
      // EAGAIN: the listener's backlog is full, so someone is listening.
      resolve(e.code === 'EAGAIN');
    });
  });
}
