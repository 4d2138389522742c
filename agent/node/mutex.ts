/**
 * One operation at a time against the CA. Renewing the agent SVID changes
 * the serial the CA pins, so a sync running at the same moment with the
 * old certificate would be refused and mistaken for an eviction.
 */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every previously queued function has settled. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn, fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
