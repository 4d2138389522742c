/**
 * A limit on the CPU-heavy jobs (signatures, verifications) this process
 * hands to libuv's thread pool at once. The pool is a single FIFO shared with
 * SQLite and the file system: a batch of 1,000 CSRs queued there in one go
 * would put every database statement (and the audit commit the response
 * waits for) behind about 50 ms of crypto. Jobs beyond the limit wait here
 * instead, in order, and the pool keeps a thread for everything else.
 */

/** libuv's pool size (UV_THREADPOOL_SIZE, default 4). */
const POOL_SIZE = Math.max(1, Number(process.env.UV_THREADPOOL_SIZE) || 4);

export class ThreadPoolGate {
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  /** @param limit jobs in the pool at once */
  constructor(readonly limit: number) {}

  /** Runs `start` (which queues one pool job) when a slot is free; settles with it. */
  run<T>(start: () => Promise<T>): Promise<T> {
    if (this.#running < this.limit) return this.#start(start);
    return new Promise<void>((resolve) => this.#waiting.push(resolve)).then(() => this.#start(start));
  }

  async #start<T>(start: () => Promise<T>): Promise<T> {
    this.#running++;
    try {
      return await start();
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
    }
  }
}

/** The gate CSR verification and certificate signing share: every pool thread but one. */
export const cryptoGate = new ThreadPoolGate(Math.max(1, POOL_SIZE - 1));
