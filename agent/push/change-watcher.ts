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
  /** The stored trust bundle, named in the advice when the CA's certificate cannot be verified. */
  bundleFile?: string;
}

/** TLS failures that mean "the CA's chain does not lead to any root we trust". */
const UNTRUSTED_CA = /unable to get local issuer certificate|certificate verify failed|unable to verify the first certificate|self[- ]signed certificate in certificate chain/i;

/** What an operator must do when the stored bundle no longer matches the CA. */
export function rebootstrapAdvice(bundleFile: string): string {
  return (
    `cannot verify the CA: the trust bundle ${bundleFile} no longer matches the CA ` +
    '(its root was probably rotated and the old one revoked while this agent was offline). ' +
    `Get the current bundle (brevis-ca bundle show > bundle.pem), remove ${bundleFile}, and restart the agent with --trust-bundle bundle.pem; ` +
    'if its agent SVID chains to the revoked root it must attest again (--join-token TOKEN, or its x509pop credentials)'
  );
}

type Outcome = { messages: number; error?: grpc.ServiceError; restarted: boolean };

export class ChangeWatcher {
  readonly #o: ChangeWatcherOptions;
  #cancel: (() => void) | null = null;
  #restartRequested = false;
  #connected = false;
  #advised = false;

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
      if (outcome.messages > 0) this.#advised = false;
      if (outcome.error && UNTRUSTED_CA.test(outcome.error.details ?? '') && !this.#advised) {
        this.#advised = true;
        logger.error({ err: outcome.error.details }, rebootstrapAdvice(this.#o.bundleFile ?? 'bundle.pem (in the data directory)'));
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
