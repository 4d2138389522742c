import * as grpc from '@grpc/grpc-js';
import { SpiffeWorkloadAPIClient } from '../proto/gen/workload.js';
import type { X509Bundle } from './bundle.js';
import { realClock, type Clock } from './clock.js';
import { WorkloadApiError, type WorkloadApiErrorCode } from './workload-error.js';
import { parseX509Bundles, parseX509Context, type X509Context } from './x509-context.js';

export { WorkloadApiError, type WorkloadApiErrorCode } from './workload-error.js';
export { parseX509Bundles, parseX509Context, type X509Context, type X509Svid } from './x509-context.js';

/**
 * The client side of the SPIFFE Workload API (spiffe/spiffe standards
 * SPIFFE_Workload_API.md and SPIFFE_Workload_Endpoint.md) over a Unix socket.
 */

/** The environment variable that names the Workload API endpoint. */
export const SPIFFE_ENDPOINT_SOCKET = 'SPIFFE_ENDPOINT_SOCKET';
/** The metadata every Workload API call must carry; agents refuse calls without it. */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

/** Reconnection delays of watches, in milliseconds. */
export interface BackoffOptions {
  /** First delay; doubles after each failed attempt. Default 1000. */
  initialMs?: number;
  /** Upper bound of the delay. Default 30000. */
  maxMs?: number;
}

export interface WorkloadApiClientOptions {
  /**
   * The endpoint: `unix:///abs/path`, `unix:/abs/path` or a bare absolute
   * path. Defaults to the SPIFFE_ENDPOINT_SOCKET environment variable.
   */
  socketPath?: string;
  clock?: Clock;
  backoff?: BackoffOptions;
}

export interface WatchOptions {
  /** Ends the watch: the returned promise then resolves. */
  signal?: AbortSignal;
  /** Told about every failure that the watch survives (it retries after a backoff). */
  onError?: (err: WorkloadApiError) => void;
}

/**
 * Resolves a Workload API address to an absolute socket path. Accepts
 * `unix:///abs/path` and `unix:/abs/path` (percent-decoded, like a URI
 * path) and, when `allowBarePath`, an absolute path as is. Throws
 * WorkloadApiError('INVALID_ADDRESS') naming what is wrong.
 */
export function parseWorkloadApiAddress(address: string, allowBarePath = true): string {
  const bad = (why: string) => new WorkloadApiError('INVALID_ADDRESS', `Workload API address '${address}': ${why}`);
  if (address === '') throw bad('is empty');
  if (allowBarePath && address.startsWith('/')) return address;
  const colon = address.indexOf(':');
  if (colon <= 0) throw bad("must be a URI such as 'unix:///path/to/socket'");
  const scheme = address.slice(0, colon).toLowerCase();
  if (scheme !== 'unix') throw bad(`scheme '${scheme}' is not supported; only 'unix' is`);
  let rest = address.slice(colon + 1);
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const authority = slash === -1 ? rest.slice(2) : rest.slice(2, slash);
    if (authority !== '') throw bad(`a unix address must not have an authority ('${authority}')`);
    rest = slash === -1 ? '' : rest.slice(slash);
  }
  if (rest.includes('?')) throw bad('a query is not allowed');
  if (rest.includes('#')) throw bad('a fragment is not allowed');
  if (!rest.startsWith('/')) throw bad('the socket path must be absolute');
  let path: string;
  try {
    path = decodeURIComponent(rest);
  } catch {
    throw bad('the path has an invalid percent-encoding');
  }
  if (path.includes('\0')) throw bad('the path contains a NUL byte');
  return path;
}

/**
 * A Workload API client on one Unix socket. Every call carries the
 * `workload.spiffe.io: true` header. Create one per process and `close()` it.
 */
export class WorkloadApiClient {
  /** The absolute socket path this client talks to. */
  readonly socketPath: string;
  readonly #client: SpiffeWorkloadAPIClient;
  readonly #clock: Clock;
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #closed = new AbortController();

  constructor(options: WorkloadApiClientOptions = {}) {
    const fromEnv = process.env[SPIFFE_ENDPOINT_SOCKET];
    if (options.socketPath !== undefined) {
      this.socketPath = parseWorkloadApiAddress(options.socketPath);
    } else if (fromEnv !== undefined && fromEnv !== '') {
      this.socketPath = parseWorkloadApiAddress(fromEnv, false);
    } else {
      throw new WorkloadApiError(
        'INVALID_ADDRESS',
        `no Workload API address: pass socketPath or set ${SPIFFE_ENDPOINT_SOCKET} (e.g. unix:///run/brevis/agent.sock)`,
      );
    }
    this.#clock = options.clock ?? realClock;
    this.#initialMs = options.backoff?.initialMs ?? 1000;
    this.#maxMs = Math.max(this.#initialMs, options.backoff?.maxMs ?? 30_000);
    // The channel's own reconnect backoff must not outlast ours, or a retry
    // after an agent restart would keep failing fast on a stale channel state.
    this.#client = new SpiffeWorkloadAPIClient(`unix://${this.socketPath}`, grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': this.#initialMs,
      'grpc.max_reconnect_backoff_ms': this.#maxMs,
    });
  }

  /** The first X509Context the agent sends, then the stream is cancelled. */
  fetchX509Context(options: { signal?: AbortSignal } = {}): Promise<X509Context> {
    return this.#fetchFirst((md) => this.#client.fetchX509Svid({}, md), parseX509Context, options.signal);
  }

  /** The current X.509 bundles of every trust domain the agent knows, keyed by trust domain name. */
  fetchX509Bundles(options: { signal?: AbortSignal } = {}): Promise<Map<string, X509Bundle>> {
    return this.#fetchFirst((md) => this.#client.fetchX509Bundles({}, md), parseX509Bundles, options.signal);
  }

  /**
   * Streams X509Contexts to `onUpdate`, one per agent message, until
   * `signal` aborts (the promise then resolves). When the stream fails with
   * Unavailable, PermissionDenied or any other retryable status, or ends,
   * it reconnects after an exponential backoff with jitter; a message that
   * cannot be parsed is reported and skipped. Rejects only with
   * InvalidArgument, which no retry can fix.
   */
  watchX509Context(onUpdate: (ctx: X509Context) => void, options: WatchOptions = {}): Promise<void> {
    return this.#watch((md) => this.#client.fetchX509Svid({}, md), parseX509Context, onUpdate, options);
  }

  /** Like watchX509Context, for FetchX509Bundles. */
  watchX509Bundles(onUpdate: (bundles: Map<string, X509Bundle>) => void, options: WatchOptions = {}): Promise<void> {
    return this.#watch((md) => this.#client.fetchX509Bundles({}, md), parseX509Bundles, onUpdate, options);
  }

  /** Ends every call and watch of this client and closes its channel. */
  close(): void {
    this.#closed.abort(new WorkloadApiError('CANCELLED', 'the Workload API client was closed'));
    this.#client.close();
  }

  #fetchFirst<Res, T>(
    open: (md: grpc.Metadata) => grpc.ClientReadableStream<Res>,
    parse: (res: Res) => T,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const abort = combine(signal, this.#closed.signal);
    if (abort.aborted) return Promise.reject(cancelled(abort));
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const call = open(securityHeader());
      const finish = (err: unknown, value?: T) => {
        if (settled) return;
        settled = true;
        abort.removeEventListener('abort', onAbort);
        call.cancel();
        if (err) reject(err);
        else resolve(value as T);
      };
      const onAbort = () => finish(cancelled(abort));
      abort.addEventListener('abort', onAbort, { once: true });
      call.on('data', (res: Res) => {
        try {
          finish(undefined, parse(res));
        } catch (e) {
          finish(e);
        }
      });
      call.on('error', (e: grpc.ServiceError) => finish(fromStatus(e)));
      call.on('end', () =>
        finish(new WorkloadApiError('UNAVAILABLE', 'the Workload API stream ended before its first message')),
      );
    });
  }

  async #watch<Res, T>(
    open: (md: grpc.Metadata) => grpc.ClientReadableStream<Res>,
    parse: (res: Res) => T,
    onUpdate: (value: T) => void,
    options: WatchOptions,
  ): Promise<void> {
    const abort = combine(options.signal, this.#closed.signal);
    const report = (err: WorkloadApiError) => {
      try {
        options.onError?.(err);
      } catch {
        // An observer's failure must not end the watch.
      }
    };
    let failures = 0;
    while (!abort.aborted) {
      const err = await new Promise<WorkloadApiError | undefined>((resolve) => {
        const call = open(securityHeader());
        const onAbort = () => call.cancel();
        abort.addEventListener('abort', onAbort, { once: true });
        const done = (e: WorkloadApiError | undefined) => {
          abort.removeEventListener('abort', onAbort);
          resolve(e);
        };
        call.on('data', (res: Res) => {
          let value: T;
          try {
            value = parse(res);
          } catch (e) {
            report(e instanceof WorkloadApiError ? e : new WorkloadApiError('INVALID_RESPONSE', String(e), { cause: e }));
            return;
          }
          failures = 0;
          try {
            onUpdate(value);
          } catch (e) {
            report(new WorkloadApiError('INVALID_RESPONSE', 'the update handler threw', { cause: e }));
          }
        });
        call.on('error', (e: grpc.ServiceError) => done(fromStatus(e)));
        call.on('end', () => done(new WorkloadApiError('UNAVAILABLE', 'the Workload API stream ended')));
      });
      if (abort.aborted) return;
      if (err?.code === 'INVALID_ARGUMENT') throw err;
      if (err) report(err);
      try {
        await this.#clock.sleep(this.#backoffMs(failures++), abort);
      } catch {
        return;
      }
    }
  }

  /** Exponential delay for the n-th consecutive failure, with equal jitter (half fixed, half random). */
  #backoffMs(n: number): number {
    const ceiling = Math.min(this.#maxMs, this.#initialMs * 2 ** Math.min(n, 30));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }
}

function securityHeader(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(WORKLOAD_API_HEADER, 'true');
  return md;
}

const STATUS_CODES: ReadonlyMap<grpc.status, WorkloadApiErrorCode> = new Map([
  [grpc.status.UNAVAILABLE, 'UNAVAILABLE'],
  // Our own cancellations never get here (the caller's abort is checked
  // first), so CANCELLED means the agent reset the stream, e.g. on shutdown.
  [grpc.status.CANCELLED, 'UNAVAILABLE'],
  [grpc.status.PERMISSION_DENIED, 'PERMISSION_DENIED'],
  [grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
]);

function fromStatus(e: grpc.ServiceError): WorkloadApiError {
  const code = STATUS_CODES.get(e.code) ?? 'RPC_FAILED';
  return new WorkloadApiError(code, `Workload API call failed: ${grpc.status[e.code] ?? e.code}: ${e.details}`, {
    cause: e,
  });
}

function cancelled(signal: AbortSignal): WorkloadApiError {
  const reason: unknown = signal.reason;
  return reason instanceof WorkloadApiError
    ? reason
    : new WorkloadApiError('CANCELLED', 'the Workload API call was aborted', { cause: reason });
}

function combine(a: AbortSignal | undefined, b: AbortSignal): AbortSignal {
  return a ? AbortSignal.any([a, b]) : b;
}
