import { EventEmitter } from 'node:events';
import type { X509Bundle } from './bundle.js';
import type { Clock } from './clock.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from './id.js';
import {
  WorkloadApiClient,
  WorkloadApiError,
  type BackoffOptions,
  type X509Context,
  type X509Svid,
} from './workload-client.js';

/** Chooses the SVID to present among those the agent sent (the first is the default). */
export type SvidPicker = (svids: readonly X509Svid[]) => X509Svid | undefined;

/** A picker that chooses the SVID with this SPIFFE ID. */
export function pickSvidById(id: string | SpiffeId): SvidPicker {
  const want = typeof id === 'string' ? parseSpiffeId(id) : id;
  return (svids) => svids.find((s) => s.spiffeId.equals(want));
}

/** A picker that chooses the SVID with this hint. */
export function pickSvidByHint(hint: string): SvidPicker {
  return (svids) => svids.find((s) => s.hint === hint);
}

export interface X509SourceOptions {
  /** Workload API address (`unix:///path`, `unix:/path` or `/path`); default SPIFFE_ENDPOINT_SOCKET. */
  socketPath?: string;
  /** An existing client to use instead; the source does not close it. */
  client?: WorkloadApiClient;
  /** Which SVID getX509Svid returns; default the first. */
  picker?: SvidPicker;
  /** Aborts `create` while it waits for the first context. */
  signal?: AbortSignal;
  clock?: Clock;
  backoff?: BackoffOptions;
}

/**
 * What the mTLS helpers need from a source of SVIDs and bundles. X509Source
 * implements it; so can anything else that holds an SVID (a file watcher,
 * a fixed identity in a test) and announces changes with 'update'.
 */
export interface X509SvidSource {
  /** The SVID to present now. */
  getX509Svid(): X509Svid;
  /** The bundle of a trust domain, or undefined. */
  getBundle(td: string): X509Bundle | undefined;
  /** Every bundle, keyed by trust domain name. */
  getBundles(): ReadonlyMap<string, X509Bundle>;
  /** Subscribes to changes of the SVID or bundles. */
  on(event: 'update', listener: () => void): unknown;
  off(event: 'update', listener: () => void): unknown;
}

/** Events of an X509Source. 'error' is only emitted when someone listens for it. */
export interface X509SourceEvents {
  /** A new context arrived and is now current (a rotation, a bundle change). */
  update: [ctx: X509Context];
  /** A failure the source survives: it keeps the last context and reconnects. */
  error: [err: WorkloadApiError];
}

/**
 * The caller's current X509-SVIDs and bundles, kept up to date from the
 * Workload API (like go-spiffe's workloadapi.X509Source). Readers always get
 * the latest context; 'update' fires after it has been replaced.
 */
export class X509Source extends EventEmitter<X509SourceEvents> implements X509SvidSource {
  #ctx: X509Context;
  readonly #picker: SvidPicker | undefined;
  readonly #stop: AbortController;
  readonly #client: WorkloadApiClient;
  readonly #ownsClient: boolean;
  readonly #watch: Promise<void>;
  #closed = false;

  private constructor(init: {
    ctx: X509Context;
    picker: SvidPicker | undefined;
    stop: AbortController;
    client: WorkloadApiClient;
    ownsClient: boolean;
    watch: Promise<void>;
  }) {
    super();
    // One source feeds every server and channel of a process, each with its own listener.
    this.setMaxListeners(0);
    this.#ctx = init.ctx;
    this.#picker = init.picker;
    this.#stop = init.stop;
    this.#client = init.client;
    this.#ownsClient = init.ownsClient;
    this.#watch = init.watch;
  }

  /**
   * Connects and resolves once the first context has arrived; until then it
   * retries on Unavailable and PermissionDenied. Rejects with
   * WorkloadApiError: INVALID_ADDRESS, INVALID_ARGUMENT (not retried) or
   * CANCELLED when `signal` aborts first.
   */
  static create(options: X509SourceOptions = {}): Promise<X509Source> {
    const ownsClient = options.client === undefined;
    const client =
      options.client ??
      new WorkloadApiClient({
        ...(options.socketPath !== undefined && { socketPath: options.socketPath }),
        ...(options.clock !== undefined && { clock: options.clock }),
        ...(options.backoff !== undefined && { backoff: options.backoff }),
      });
    const stop = new AbortController();
    return new Promise<X509Source>((resolve, reject) => {
      let source: X509Source | undefined;
      let lastError: WorkloadApiError | undefined;
      const giveUp = (err: unknown) => {
        stop.abort();
        if (ownsClient) client.close();
        reject(err);
      };
      const onCreateAbort = () => {
        const cause = lastError ?? options.signal?.reason;
        giveUp(new WorkloadApiError('CANCELLED', 'X509Source creation was aborted before the first context', { cause }));
      };
      if (options.signal?.aborted) {
        onCreateAbort();
        return;
      }
      options.signal?.addEventListener('abort', onCreateAbort, { once: true });
      const watch = client.watchX509Context(
        (ctx) => {
          if (source === undefined) {
            options.signal?.removeEventListener('abort', onCreateAbort);
            source = new X509Source({ ctx, picker: options.picker, stop, client, ownsClient, watch });
            resolve(source);
            return;
          }
          source.#update(ctx);
        },
        {
          signal: stop.signal,
          onError: (err) => {
            lastError = err;
            if (source && source.listenerCount('error') > 0) source.emit('error', err);
          },
        },
      );
      watch.catch((err: unknown) => {
        if (source === undefined) {
          options.signal?.removeEventListener('abort', onCreateAbort);
          giveUp(err);
        } else if (source.listenerCount('error') > 0) {
          source.emit('error', err as WorkloadApiError);
        }
      });
    });
  }

  /** The current context. */
  get context(): X509Context {
    this.#checkOpen();
    return this.#ctx;
  }

  /** The SVID to present: the picker's choice, or the default (first) one. Throws when the picker finds none. */
  getX509Svid(): X509Svid {
    const svids = this.context.svids;
    const svid = this.#picker ? this.#picker(svids) : svids[0];
    if (!svid) throw new WorkloadApiError('INVALID_RESPONSE', 'no SVID of the current context matches the picker');
    return svid;
  }

  /** Every SVID of the current context. */
  getX509Svids(): readonly X509Svid[] {
    return this.context.svids;
  }

  /** The bundle of trust domain `td` (a name or `spiffe://td`), or undefined when the agent sent none. */
  getBundle(td: string): X509Bundle | undefined {
    return this.context.bundles.get(parseTrustDomain(td));
  }

  /** Every bundle of the current context, keyed by trust domain name. */
  getBundles(): ReadonlyMap<string, X509Bundle> {
    return this.context.bundles;
  }

  /**
   * Stops watching and, unless the client was passed in, closes it; until
   * then the open stream keeps the process alive. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    await this.#watch.catch(() => undefined);
    if (this.#ownsClient) this.#client.close();
    this.removeAllListeners('update');
  }

  #update(ctx: X509Context): void {
    if (this.#closed) return;
    this.#ctx = ctx;
    this.emit('update', ctx);
  }

  #checkOpen(): void {
    if (this.#closed) throw new WorkloadApiError('CANCELLED', 'the X509Source is closed');
  }
}
