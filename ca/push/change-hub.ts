/**
 * Change notifications for connected agents: whoever changes the bundle,
 * the authorities, entries or agents publishes here, and every open
 * WatchChanges stream passes it on. A notification is only a hint to sync
 * now; agents still poll, so one that is lost costs at most an interval.
 */

/** Why agents should sync: the trust data, the authorities, entries, or an agent record changed. */
export type ChangeReason = 'bundle' | 'authorities' | 'entries' | 'agent';

export interface ChangeNotice {
  reason: ChangeReason;
  /** The bundle sequence at the time of the change. */
  bundleSequence: number;
}

export class ChangeHub {
  readonly #listeners = new Set<(n: ChangeNotice) => void>();
  readonly #closers = new Set<() => void>();
  readonly #taps = new Set<(n: ChangeNotice) => void>();
  #closed = false;

  constructor(private readonly sequence: () => number) {}

  /** The current bundle sequence. */
  get bundleSequence(): number {
    return this.sequence();
  }

  /** Open streams. */
  get subscribers(): number {
    return this.#listeners.size;
  }

  /**
   * Listens until the returned function is called. `onClose` runs when the
   * hub closes (the CA stops), so streams can end cleanly.
   */
  subscribe(listener: (n: ChangeNotice) => void, onClose?: () => void): () => void {
    if (this.#closed) {
      onClose?.();
      return () => undefined;
    }
    this.#listeners.add(listener);
    if (onClose) this.#closers.add(onClose);
    return () => {
      this.#listeners.delete(listener);
      if (onClose) this.#closers.delete(onClose);
    };
  }

  /**
   * Also tells `fn` of every publish, without counting as a stream (the
   * other CA servers sharing the database hear of local changes this way:
   * ca/ha/cluster-changes.ts). Returns an unsubscribe function.
   */
  tap(fn: (n: ChangeNotice) => void): () => void {
    this.#taps.add(fn);
    return () => this.#taps.delete(fn);
  }

  publish(reason: ChangeReason): void {
    const n = { reason, bundleSequence: this.sequence() };
    for (const l of [...this.#listeners, ...this.#taps]) {
      try {
        l(n);
      } catch {
        // One stream's failure must not keep the others from hearing.
      }
    }
  }

  /** Ends every stream; later subscribers are closed at once. */
  close(): void {
    this.#closed = true;
    const closers = [...this.#closers];
    this.#listeners.clear();
    this.#closers.clear();
    for (const c of closers) c();
  }
}
