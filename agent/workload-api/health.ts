/**
 * The standard gRPC health service (grpc.health.v1.Health), usable by any
 * Brevis server: hold a status per service name, answer Check and List, and
 * stream changes to Watch callers.
 */
import * as grpc from '@grpc/grpc-js';
import { echo } from '../../ca/api/echo.js';
import {
  type HealthCheckRequest,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthListResponse,
  type HealthServer,
} from '../../proto/gen/grpc/health/v1/health.js';

export { HealthService as HealthServiceDefinition } from '../../proto/gen/grpc/health/v1/health.js';
export { HealthCheckResponse_ServingStatus as ServingStatus } from '../../proto/gen/grpc/health/v1/health.js';

/** A status by enum value or by name (`'SERVING'`, `'NOT_SERVING'`, ...). */
export type ServingStatusInput = ServingStatus | keyof typeof ServingStatus;

type WatchCall = grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>;

interface Watcher {
  call: WatchCall;
  last: ServingStatus | undefined;
}

/**
 * Serving status per service name ('' is the server as a whole). Register
 * with `server.addService(HealthServiceDefinition, health.handlers())`.
 */
export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<Watcher>>();
  private closed = false;

  /**
   * @param initial statuses to start with, e.g. `{ '': ServingStatus.NOT_SERVING }`.
   * @param beforeRead called before every Check, List and Watch, so a server can
   *   refresh statuses it derives from elsewhere.
   */
  constructor(
    initial: Record<string, ServingStatusInput> = {},
    private readonly beforeRead?: () => void,
  ) {
    for (const [service, status] of Object.entries(initial)) this.statuses.set(service, toStatus(status));
  }

  /** Sets a service's status and notifies its watchers if it changed. */
  setStatus(service: string, input: ServingStatusInput): void {
    const status = toStatus(input);
    if (this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const w of this.watchers.get(service) ?? []) send(w, status);
  }

  /** The status of `service`, or undefined when it is not known. */
  getStatus(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Ends every Watch stream (status OK) and refuses new ones; for server shutdown. */
  close(): void {
    this.closed = true;
    for (const set of this.watchers.values()) for (const w of set) w.call.end();
    this.watchers.clear();
  }

  /** The grpc-js implementation of the service. */
  handlers(): HealthServer {
    return {
      check: (call, callback) => {
        this.beforeRead?.();
        const status = this.statuses.get(call.request.service);
        if (status === undefined) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service '${echo(call.request.service)}'` });
          return;
        }
        callback(null, { status });
      },
      list: (_call, callback) => {
        this.beforeRead?.();
        const statuses: HealthListResponse['statuses'] = {};
        for (const [service, status] of this.statuses) statuses[service] = { status };
        callback(null, { statuses });
      },
      watch: (call) => {
        if (this.closed) {
          call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'server is shutting down' });
          return;
        }
        this.beforeRead?.();
        const service = call.request.service;
        const w: Watcher = { call, last: undefined };
        let set = this.watchers.get(service);
        if (!set) this.watchers.set(service, (set = new Set()));
        set.add(w);
        const forget = () => {
          set.delete(w);
          if (set.size === 0 && this.watchers.get(service) === set) this.watchers.delete(service);
        };
        call.on('cancelled', forget);
        call.on('close', forget);
        // Per the health protocol, an unknown service is reported, not refused:
        // it may be registered later.
        send(w, this.statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN);
      },
    };
  }
}

function toStatus(input: ServingStatusInput): ServingStatus {
  return typeof input === 'number' ? input : ServingStatus[input];
}

function send(w: Watcher, status: ServingStatus): void {
  if (w.last === status || w.call.writableEnded) return;
  w.last = status;
  w.call.write(HealthCheckResponse.create({ status }));
}
