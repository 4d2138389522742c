/**
 * Keeps a WatchChanges stream open to the CA (mTLS with the agent SVID) and
 * calls `onChange` for each notification, including the first one after
 * every (re)connection, so the agent syncs at once instead of waiting for
 * its poll interval. When the stream ends or cannot be opened it is opened
 * again with backoff; polling goes on meanwhile. `restart` reopens it at
 * once (after the agent SVID changed, the stream must use the new one).
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { WatchChangesResponse } from '../../proto/gen/brevis/ca/v1/push.js';
import type { Clock } from '../../spiffe/clock.js';
import type { NodeChannel } from '../node/channel.js';
import { backoffDelayMs, type BackoffPolicy } from '../sync/backoff.js';

export interface ChangeWatcherOptions {
  channel: NodeChannel;
  clock: Clock;
  logger: Logger;
  backoff: BackoffPolicy;
  onChange: (n: WatchChangesResponse) => void;
  random?: () => number;
}

type Outcome = { messages: number; error?: grpc.ServiceError; restarted: boolean };

export class ChangeWatcher {
  readonly #o: ChangeWatcherOptions;
  #cancel: (() => void) | null = null;
  #restartRequested = false;
  #connected = false;

  constructor(options: ChangeWatcherOptions) {
    this.#o = options;
  }

  /** True while a stream is open and has delivered its first message. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Closes the current stream; `run` opens a new one at once. */
  restart(): void {
    this.#restartRequested = true;
    this.#cancel?.();
  }

  /** Watches until `signal` aborts (then resolves). Never rejects. */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, logger } = this.#o;
    let failures = 0;
    while (!signal.aborted) {
      this.#restartRequested = false;
      const outcome = await this.#once(signal);
      this.#connected = false;
      if (signal.aborted) return;
      if (outcome.restarted) {
        failures = 0;
        continue;
      }
      failures = outcome.messages > 0 ? 1 : failures + 1;
      const delay = backoffDelayMs(failures, this.#o.backoff, this.#o.random);
      const why = outcome.error ? `${grpc.status[outcome.error.code] ?? outcome.error.code}: ${outcome.error.details}` : 'the CA ended the stream';
      logger.debug({ err: why, retryInMs: Math.round(delay) }, 'change notifications from the CA interrupted; polling meanwhile');
      try {
        await clock.sleep(delay, signal);
      } catch {
        return;
      }
    }
  }

  #once(signal: AbortSignal): Promise<Outcome> {
    return this.#o.channel
      .use(
        'agent',
        (client) =>
          new Promise<Outcome>((resolve) => {
            let messages = 0;
            let settled = false;
            const call = client.watchChanges({}, new grpc.Metadata());
            const done = (error?: grpc.ServiceError) => {
              if (settled) return;
              settled = true;
              signal.removeEventListener('abort', cancel);
              this.#cancel = null;
              resolve({ messages, ...(error ? { error } : {}), restarted: this.#restartRequested });
            };
            const cancel = () => call.cancel();
            signal.addEventListener('abort', cancel, { once: true });
            this.#cancel = cancel;
            if (this.#restartRequested) call.cancel();
            call.on('data', (n: WatchChangesResponse) => {
              messages++;
              this.#connected = true;
              this.#o.onChange(n);
            });
            call.on('error', (e: grpc.ServiceError) => done(e));
            call.on('end', () => done());
            call.on('status', () => done());
          }),
      )
      .catch((e: unknown) => ({ messages: 0, error: { code: grpc.status.UNAVAILABLE, details: (e as Error).message } as grpc.ServiceError, restarted: false }));
  }
}
