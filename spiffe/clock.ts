/**
 * Time is a dependency: every component that decides anything about expiry
 * takes a Clock, and only `realClock` reads the system time.
 */
export interface Clock {
  /** The current time. */
  now(): Date;
  /** Resolves after `ms` milliseconds, or rejects with the signal's reason when aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => new Date(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, ms));
      timer.unref?.();
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

/** Seconds since the epoch for a Date (floored). */
export function epochSeconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}
